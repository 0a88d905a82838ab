"""The sync retry driver (``Retry.call`` and the decorator on sync functions), on a fake clock."""

from __future__ import annotations

import inspect
import logging
import math
import random
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import stalwart
from stalwart import (
    Backoff,
    BulkheadFullError,
    CircuitOpenError,
    Event,
    Jitter,
    Retry,
    RetryBudgetExhausted,
    RetryGaveUp,
    RetryScheduled,
    add_hook,
    deadline,
    remove_hook,
)
from stalwart.testing import FakeClock

NO_JITTER = Backoff.exponential(jitter=Jitter.NONE)  # 1, 2, 4, 8 ...


class Transient(OSError):
    """The transient error the tests retry (``on=OSError`` covers it)."""


class Flaky:
    """Raises the given exceptions (or returns the given values) in turn, counting calls."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.args = (args, kwargs)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, type) and issubclass(outcome, BaseException):
            raise outcome()
        return outcome


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=100.0)


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    hook = seen.append  # one bound method: remove_hook compares by identity
    add_hook(hook)
    yield seen
    remove_hook(hook)


def run(retry: Retry, fn: Callable[..., Any], mode: str, *args: Any, **kwargs: Any) -> Any:
    if mode == "call":
        return retry.call(fn, *args, **kwargs)

    def target(*a: Any, **kw: Any) -> Any:
        return fn(*a, **kw)

    return retry(target)(*args, **kwargs)


MODES = pytest.mark.parametrize("mode", ["call", "decorator"])


@MODES
def test_success_first_time_does_not_sleep(clock: FakeClock, mode: str) -> None:
    fn = Flaky("ok")
    assert run(Retry(on=OSError, clock=clock), fn, mode, 1, b=2) == "ok"
    assert fn.calls == 1
    assert fn.args == ((1,), {"b": 2})
    assert clock.sleeps == []


@MODES
def test_retries_until_success_with_the_backoff_schedule(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient("a"), Transient("b"), Transient("c"), "ok")
    retry = Retry(on=OSError, max_attempts=4, backoff=NO_JITTER, clock=clock)
    assert run(retry, fn, mode) == "ok"
    assert fn.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert clock.monotonic() == 107.0


@MODES
def test_exhausted_attempts_raise_the_last_exception_unchanged_with_a_note(clock: FakeClock, mode: str) -> None:
    last = ConnectionError("third")
    fn = Flaky(ConnectionError("first"), ConnectionError("second"), last)
    retry = Retry(on=OSError, backoff=NO_JITTER, clock=clock, name="upstream")
    with pytest.raises(ConnectionError) as info:
        run(retry, fn, mode)
    assert info.value is last
    assert type(info.value) is ConnectionError
    assert info.value.args == ("third",)
    assert fn.calls == 3
    assert clock.sleeps == [1.0, 2.0]
    assert info.value.__notes__ == ["stalwart: 'upstream' gave up after 3 attempts over 3.000s (no attempts left)"]
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    # The original frame where it was raised is still in the traceback.
    assert any(frame.name == "__call__" for frame in traceback.extract_tb(info.value.__traceback__))


@MODES
def test_elapsed_in_the_note_includes_the_first_attempt(clock: FakeClock, mode: str) -> None:
    def slow_failure() -> None:
        clock.advance(10.0)
        raise Transient("slow")

    with pytest.raises(OSError, match="slow") as info:
        run(Retry(on=OSError, max_attempts=2, backoff=Backoff.constant(1.0), clock=clock), slow_failure, mode)
    assert "2 attempts over 21.000s" in info.value.__notes__[0]


@MODES
def test_exception_not_covered_by_on_is_not_retried(clock: FakeClock, mode: str) -> None:
    fn = Flaky(ValueError("bug"))
    with pytest.raises(ValueError, match="bug") as info:
        run(Retry(on=OSError, clock=clock), fn, mode)
    assert fn.calls == 1
    assert not hasattr(info.value, "__notes__")
    assert clock.sleeps == []


@MODES
def test_non_retryable_exception_on_a_retry_ends_the_loop_with_a_note(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient("transient"), ValueError("bug"), "never")
    with pytest.raises(ValueError, match="bug") as info:
        run(Retry(on=OSError, backoff=NO_JITTER, clock=clock), fn, mode)
    assert fn.calls == 2
    assert "not retryable" in info.value.__notes__[0]


@MODES
def test_predicate_on(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient(503, "busy"), Transient(404, "missing"))
    retry = Retry(on=lambda exc: isinstance(exc, OSError) and exc.errno == 503, backoff=NO_JITTER, clock=clock)
    with pytest.raises(OSError, match="missing"):
        run(retry, fn, mode)
    assert fn.calls == 2


@MODES
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_interpreter_exits_are_never_retried(clock: FakeClock, mode: str, exc_type: type[BaseException]) -> None:
    raised = exc_type()
    fn = Flaky(raised, "ok")
    with pytest.raises(exc_type) as info:
        run(Retry(on=BaseException, clock=clock), fn, mode)
    assert info.value is raised
    assert fn.calls == 1
    assert not hasattr(raised, "__notes__")


@MODES
def test_interrupt_on_a_retry_propagates_without_note(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient(), KeyboardInterrupt(), "ok")
    with pytest.raises(KeyboardInterrupt) as info:
        run(Retry(on=BaseException, clock=clock), fn, mode)
    assert fn.calls == 2
    assert not hasattr(info.value, "__notes__")


@MODES
@pytest.mark.parametrize("rejected", [CircuitOpenError("db", retry_after=5.0), BulkheadFullError("db", 10, 100)])
def test_rejected_is_never_retried(clock: FakeClock, mode: str, rejected: Exception) -> None:
    fn = Flaky(rejected, "ok")
    with pytest.raises(type(rejected)) as info:
        run(Retry(on=Exception, clock=clock), fn, mode)
    assert info.value is rejected
    assert fn.calls == 1
    assert clock.sleeps == []


@MODES
def test_open_circuit_ends_the_retries_at_once(clock: FakeClock, mode: str, events: list[Event]) -> None:
    # The seed's SmartRetry: stop as soon as the breaker is open.
    opened = CircuitOpenError("db", retry_after=30.0)
    fn = Flaky(Transient("down"), opened, "ok")
    with pytest.raises(CircuitOpenError) as info:
        run(Retry(on=Exception, max_attempts=5, backoff=NO_JITTER, clock=clock), fn, mode)
    assert info.value is opened
    assert fn.calls == 2
    assert clock.sleeps == [1.0]
    assert [type(e) for e in events] == [RetryScheduled, RetryGaveUp]
    assert events[-1].reason == "not_retryable"  # type: ignore[union-attr]


@MODES
def test_on_result_retries_and_returns_the_last_result(clock: FakeClock, mode: str) -> None:
    fn = Flaky({"status": 503}, {"status": 503}, {"status": 502})
    retry = Retry(on=OSError, on_result=lambda r: r["status"] >= 500, backoff=NO_JITTER, clock=clock)
    assert run(retry, fn, mode) == {"status": 502}
    assert fn.calls == 3
    assert clock.sleeps == [1.0, 2.0]


@MODES
def test_on_result_accepts_a_good_result(clock: FakeClock, mode: str) -> None:
    fn = Flaky(None, Transient(), 0, "late")
    retry = Retry(on=OSError, on_result=lambda r: r is None, max_attempts=5, backoff=NO_JITTER, clock=clock)
    assert run(retry, fn, mode) == 0  # a falsy result is a result
    assert fn.calls == 3


@MODES
def test_on_result_then_exception_raises_the_exception(clock: FakeClock, mode: str) -> None:
    last = Transient("last")
    fn = Flaky("retry me", last)
    retry = Retry(on=OSError, on_result=lambda r: r == "retry me", max_attempts=2, clock=clock)
    with pytest.raises(Transient) as info:
        run(retry, fn, mode)
    assert info.value is last


@MODES
def test_deadline_gives_up_before_sleeping_into_it(clock: FakeClock, mode: str, events: list[Event]) -> None:
    last = Transient("second")
    fn = Flaky(Transient("first"), last, "never")
    retry = Retry(on=OSError, max_attempts=10, backoff=NO_JITTER, clock=clock)
    with deadline(2.5, clock=clock), pytest.raises(Transient) as info:
        run(retry, fn, mode)
    # Attempt 1 fails at t=0 and sleeps 1 s; attempt 2 fails at t=1 with 1.5 s left: a 2 s sleep would cross it.
    assert info.value is last
    assert fn.calls == 2
    assert clock.sleeps == [1.0]
    assert "deadline" in info.value.__notes__[0]
    assert isinstance(events[-1], RetryGaveUp)
    assert events[-1].reason == "deadline"


@MODES
def test_nothing_is_retried_once_the_deadline_has_passed(clock: FakeClock, mode: str) -> None:
    def exhaust() -> None:
        clock.advance(5.0)
        raise Transient("late")

    with deadline(1.0, clock=clock), pytest.raises(Transient):
        run(Retry(on=OSError, backoff=Backoff.constant(0), clock=clock), exhaust, mode)
    assert clock.sleeps == []


@MODES
def test_max_elapsed(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient())
    retry = Retry(on=OSError, max_attempts=100, backoff=NO_JITTER, max_elapsed=timedelta(seconds=10), clock=clock)
    with pytest.raises(Transient) as info:
        run(retry, fn, mode)
    # Sleeps 1, 2, 4 bring elapsed to 7; the next 8 s would end at 15 >= 10.
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert fn.calls == 4
    assert "max_elapsed" in info.value.__notes__[0]


class Throttled(Exception):
    def __init__(self, retry_after: object) -> None:
        super().__init__(f"throttled, retry after {retry_after!r}")
        self.retry_after = retry_after


def server_delay(outcome: object) -> Any:
    return getattr(outcome, "retry_after", None)


@MODES
def test_retry_after_is_honoured_and_backoff_continues(clock: FakeClock, mode: str, events: list[Event]) -> None:
    fn = Flaky(Transient(), Throttled(7.5), Transient(), "ok")
    retry = Retry(on=Exception, max_attempts=4, backoff=NO_JITTER, retry_after=server_delay, clock=clock)
    assert run(retry, fn, mode) == "ok"
    # backoff n=0 -> 1 s; pushback 7.5 s; backoff continues from the last computed delay: n=2 -> 4 s.
    assert clock.sleeps == [1.0, 7.5, 4.0]
    scheduled = [e for e in events if isinstance(e, RetryScheduled)]
    assert [e.reason for e in scheduled] == ["backoff", "retry_after", "backoff"]


@MODES
@pytest.mark.parametrize("bad", [-1.0, math.nan, -math.inf, "soon", None, True])
def test_invalid_retry_after_falls_back_to_backoff(clock: FakeClock, mode: str, bad: object) -> None:
    fn = Flaky(Throttled(bad), "ok")
    retry = Retry(on=Exception, backoff=NO_JITTER, retry_after=server_delay, clock=clock)
    assert run(retry, fn, mode) == "ok"
    assert clock.sleeps == [1.0]


@MODES
@pytest.mark.parametrize("requested", [61.0, math.inf])  # infinite: tests/regressions/test_retry_after_overflow.py
def test_retry_after_longer_than_the_cap_gives_up_at_once(clock: FakeClock, mode: str, requested: float) -> None:
    last = Throttled(requested)
    fn = Flaky(last, "ok")
    retry = Retry(on=Exception, retry_after=server_delay, clock=clock)  # max_retry_after=60.0
    with pytest.raises(Throttled) as info:
        run(retry, fn, mode)
    assert info.value is last
    assert fn.calls == 1
    assert clock.sleeps == []
    assert "max_retry_after" in info.value.__notes__[0]


@MODES
def test_retry_after_at_the_cap_and_within_the_deadline(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Throttled(5.0), "ok")
    retry = Retry(on=Exception, retry_after=server_delay, max_retry_after=5.0, clock=clock)
    assert run(retry, fn, mode) == "ok"
    assert clock.sleeps == [5.0]
    fn = Flaky(Throttled(5.0), "ok")
    with deadline(4.0, clock=clock), pytest.raises(Throttled):
        run(retry, fn, mode)


@MODES
def test_retry_after_on_a_result(clock: FakeClock, mode: str) -> None:
    class Response:
        def __init__(self, status: int, retry_after: float | None = None) -> None:
            self.status, self.retry_after = status, retry_after

    fn = Flaky(Response(429, 3.0), Response(200))
    retry = Retry(on=OSError, on_result=lambda r: r.status == 429, retry_after=server_delay, clock=clock)
    assert run(retry, fn, mode).status == 200
    assert clock.sleeps == [3.0]


@MODES
def test_failing_retry_after_extractor_is_logged_and_ignored(
    clock: FakeClock, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(outcome: object) -> float:
        raise RuntimeError("extractor bug")

    fn = Flaky(Transient(), "ok")
    with caplog.at_level(logging.ERROR, logger="stalwart"):
        assert run(Retry(on=OSError, backoff=NO_JITTER, retry_after=broken, clock=clock), fn, mode) == "ok"
    assert clock.sleeps == [1.0]
    assert "retry_after extractor failed" in caplog.text


@MODES
def test_events(clock: FakeClock, mode: str, events: list[Event]) -> None:
    errors = [Transient("1"), Transient("2"), Transient("3")]
    fn = Flaky(*errors)
    with pytest.raises(Transient):
        run(Retry(on=OSError, backoff=NO_JITTER, name="svc", clock=clock), fn, mode)
    assert events == [
        RetryScheduled("svc", 1, 1.0, "backoff", errors[0], 0.0),
        RetryScheduled("svc", 2, 2.0, "backoff", errors[1], 1.0),
        RetryGaveUp("svc", 3, 3.0, "max_attempts", errors[2]),
    ]


@MODES
def test_events_are_not_built_without_hooks(clock: FakeClock, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise AssertionError("event built without a hook")

    monkeypatch.setattr("stalwart._retry.RetryScheduled", boom)
    monkeypatch.setattr("stalwart._retry.RetryGaveUp", boom)
    with pytest.raises(Transient):
        run(Retry(on=OSError, clock=clock), Flaky(Transient()), mode)


class FakeBudget:
    name = "budget"

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self.log: list[tuple[str, bool]] = []

    def record_success(self, first: bool) -> None:
        self.log.append(("success", first))

    def record_failure(self, first: bool) -> None:
        self.log.append(("failure", first))

    def try_acquire_retry(self) -> bool:
        self.log.append(("acquire", self.retries > 0))
        self.retries -= 1
        return self.retries >= 0


@MODES
def test_budget_hook_points(clock: FakeClock, mode: str) -> None:
    budget = FakeBudget(retries=5)
    fn = Flaky(Transient(), "ok")
    assert run(Retry(on=OSError, budget=budget, clock=clock), fn, mode) == "ok"
    assert budget.log == [("failure", True), ("acquire", True), ("success", False)]
    budget.log.clear()
    assert run(Retry(on=OSError, budget=budget, clock=clock), Flaky("ok"), mode) == "ok"
    assert budget.log == [("success", True)]


@MODES
def test_exhausted_budget_stops_retrying(clock: FakeClock, mode: str, events: list[Event]) -> None:
    budget = FakeBudget(retries=1)
    last = Transient("b")
    fn = Flaky(Transient("a"), last, "ok")
    with pytest.raises(Transient) as info:
        run(Retry(on=OSError, budget=budget, backoff=NO_JITTER, clock=clock), fn, mode)
    assert info.value is last
    assert fn.calls == 2
    assert "retry budget is exhausted" in info.value.__notes__[0]
    assert RetryBudgetExhausted("budget", 2) in events
    assert isinstance(events[-1], RetryGaveUp)
    assert events[-1].reason == "budget"


def test_decorator_keeps_metadata_and_signature() -> None:
    retry = Retry(on=OSError)

    def fetch(url: str, *, timeout: float = 1.0) -> str:
        """Fetch a URL."""
        return url

    wrapped = retry(fetch)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch a URL."
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(wrapped)


def test_decorating_generator_functions_is_refused() -> None:
    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        Retry(on=OSError)(gen)
    with pytest.raises(TypeError, match="generator"):
        Retry(on=OSError)(agen)


@pytest.mark.parametrize(
    ("kw", "parameter", "error"),
    [
        ({"on": 5}, "on", TypeError),
        ({"on": (OSError, 5)}, "on", TypeError),
        ({"on": OSError, "max_attempts": 0}, "max_attempts", ValueError),
        ({"on": OSError, "max_attempts": 1.5}, "max_attempts", TypeError),
        ({"on": OSError, "backoff": 2.0}, "backoff", TypeError),
        ({"on": OSError, "max_elapsed": 0}, "max_elapsed", ValueError),
        ({"on": OSError, "max_elapsed": -1}, "max_elapsed", ValueError),
        ({"on": OSError, "max_elapsed": math.nan}, "max_elapsed", ValueError),
        ({"on": OSError, "max_retry_after": -1}, "max_retry_after", ValueError),
        ({"on": OSError, "min_attempt_time": -1}, "min_attempt_time", ValueError),
        ({"on": OSError, "on_result": 3}, "on_result", TypeError),
        ({"on": OSError, "retry_after": 3}, "retry_after", TypeError),
        ({"on": OSError, "budget": object()}, "budget", TypeError),
        ({"on": OSError, "name": ""}, "name", TypeError),
        ({"on": OSError, "clock": object()}, "clock", TypeError),
        ({"on": OSError, "random": 0.5}, "random", TypeError),
    ],
)
def test_invalid_configuration(kw: dict[str, Any], parameter: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=parameter):
        Retry(**kw)


def test_on_is_required_and_keyword_only() -> None:
    with pytest.raises(TypeError):
        Retry()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Retry(OSError)  # type: ignore[misc]


def test_defaults_and_repr() -> None:
    retry = Retry(on=OSError)
    assert retry.max_attempts == 3
    assert retry.backoff == Backoff.exponential()
    assert retry.rules.max_elapsed is None
    assert retry.rules.max_retry_after == 60.0
    assert retry.name == "retry"
    assert retry.budget is None
    assert "max_attempts=3" in repr(retry)
    assert retry.retryable(Transient())
    assert not retry.retryable(CircuitOpenError("x"))
    assert stalwart.Retry is Retry


def test_policy_is_immutable_and_slotted() -> None:
    retry = Retry(on=OSError)
    with pytest.raises(AttributeError):
        retry.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        retry.max_attempts = 5  # type: ignore[misc]


def test_full_jitter_by_default_with_injected_random(clock: FakeClock) -> None:
    fn = Flaky(Transient(), Transient(), "ok")
    retry = Retry(on=OSError, clock=clock, random=lambda: 0.25)
    assert retry.call(fn) == "ok"
    assert clock.sleeps == [0.25, 0.5]  # U(0, 1) and U(0, 2) at u = 0.25


def test_seeded_random_reproduces_the_schedule() -> None:
    def delays(seed: int) -> list[float]:
        clock = FakeClock()
        Retry(on=OSError, max_attempts=6, clock=clock, random=random.Random(seed).random).call(
            Flaky(Transient(), Transient(), Transient(), Transient(), Transient(), "ok")
        )
        return clock.sleeps

    assert delays(3) == delays(3)
    assert delays(3) != delays(4)


def test_shared_policy_keeps_per_call_state_across_threads() -> None:
    clock = FakeClock()
    retry = Retry(on=OSError, max_attempts=3, backoff=Backoff.constant(0), clock=clock)
    failures: list[BaseException] = []
    calls = [0] * 16

    def worker(i: int) -> None:
        def fn() -> int:
            calls[i] += 1
            if calls[i] < 3:
                raise Transient(i)
            return i

        try:
            assert retry.call(fn) == i
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert calls == [3] * 16


def test_zero_delay_does_not_call_sleep(clock: FakeClock) -> None:
    fn = Flaky(Transient(), Transient(), "ok")
    assert Retry(on=OSError, backoff=Backoff.constant(0.0), clock=clock).call(fn) == "ok"
    assert fn.calls == 3
    assert clock.sleeps == []


@MODES
def test_min_attempt_time_reserves_time_before_the_deadline(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient("a"), Transient("b"), "ok")
    retry = Retry(on=OSError, backoff=Backoff.constant(1.0), min_attempt_time=timedelta(seconds=2), clock=clock)
    with deadline(3.5, clock=clock), pytest.raises(Transient, match="b"):
        run(retry, fn, mode)
    # First retry: 1 s + 2 s < 3.5 s left; second: 1 s + 2 s >= 2.5 s left.
    assert clock.sleeps == [1.0]
    assert retry.rules.min_attempt_time == 2.0
