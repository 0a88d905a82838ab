"""The async retry driver (``await Retry.run`` and the decorator on coroutine functions), on a fake clock."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from stalwart import (
    Backoff,
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
    """An async callable raising the given exceptions (or returning the given values) in turn."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.args = (args, kwargs)
        await asyncio.sleep(0)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=100.0)


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    hook = seen.append
    add_hook(hook)
    yield seen
    remove_hook(hook)


async def run(retry: Retry, fn: Callable[..., Awaitable[Any]], mode: str, *args: Any, **kwargs: Any) -> Any:
    if mode == "run":
        return await retry.run(fn, *args, **kwargs)

    async def target(*a: Any, **kw: Any) -> Any:
        return await fn(*a, **kw)

    return await retry(target)(*args, **kwargs)


MODES = pytest.mark.parametrize("mode", ["run", "decorator"])


@MODES
async def test_success_first_time(clock: FakeClock, mode: str) -> None:
    fn = Flaky("ok")
    assert await run(Retry(on=OSError, clock=clock), fn, mode, 1, b=2) == "ok"
    assert fn.calls == 1
    assert fn.args == ((1,), {"b": 2})
    assert clock.sleeps == []


@MODES
async def test_retries_until_success(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient(), Transient(), Transient(), "ok")
    assert await run(Retry(on=OSError, max_attempts=4, backoff=NO_JITTER, clock=clock), fn, mode) == "ok"
    assert fn.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]


@MODES
async def test_last_exception_unchanged_with_note(clock: FakeClock, mode: str) -> None:
    last = TimeoutError("third")
    fn = Flaky(TimeoutError("first"), TimeoutError("second"), last)
    with pytest.raises(TimeoutError) as info:
        await run(Retry(on=TimeoutError, backoff=NO_JITTER, clock=clock, name="api"), fn, mode)
    assert info.value is last
    assert info.value.__notes__ == ["stalwart: 'api' gave up after 3 attempts over 3.000s (no attempts left)"]
    assert info.value.__context__ is None
    assert fn.calls == 3


@MODES
async def test_on_result_returns_the_last_result(clock: FakeClock, mode: str) -> None:
    fn = Flaky(503, 503, 502)
    retry = Retry(on=OSError, on_result=lambda status: status >= 500, backoff=NO_JITTER, clock=clock)
    assert await run(retry, fn, mode) == 502
    assert fn.calls == 3


@MODES
async def test_cancelled_error_is_never_retried(clock: FakeClock, mode: str) -> None:
    raised = asyncio.CancelledError()
    fn = Flaky(raised, "ok")
    with pytest.raises(asyncio.CancelledError) as info:
        await run(Retry(on=BaseException, clock=clock), fn, mode)
    assert info.value is raised
    assert fn.calls == 1
    assert not hasattr(raised, "__notes__")


@MODES
async def test_cancelled_error_on_a_retry_propagates(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient(), asyncio.CancelledError(), "ok")
    with pytest.raises(asyncio.CancelledError):
        await run(Retry(on=BaseException, clock=clock), fn, mode)
    assert fn.calls == 2


@MODES
async def test_rejected_is_never_retried(clock: FakeClock, mode: str) -> None:
    opened = CircuitOpenError("db", retry_after=1.0)
    fn = Flaky(Transient(), opened, "ok")
    with pytest.raises(CircuitOpenError) as info:
        await run(Retry(on=Exception, max_attempts=5, backoff=NO_JITTER, clock=clock), fn, mode)
    assert info.value is opened
    assert fn.calls == 2


@MODES
async def test_exception_not_covered_is_not_retried(clock: FakeClock, mode: str) -> None:
    fn = Flaky(KeyError("k"), "ok")
    with pytest.raises(KeyError):
        await run(Retry(on=OSError, clock=clock), fn, mode)
    assert fn.calls == 1


@MODES
async def test_deadline_gives_up_before_sleeping_into_it(clock: FakeClock, mode: str, events: list[Event]) -> None:
    last = Transient("second")
    fn = Flaky(Transient("first"), last, "never")
    retry = Retry(on=OSError, max_attempts=10, backoff=NO_JITTER, clock=clock)
    # The sync form of the scope sets the ambient deadline on the fake clock without arming a real timer.
    with deadline(2.5, clock=clock), pytest.raises(Transient) as info:
        await run(retry, fn, mode)
    assert info.value is last
    assert clock.sleeps == [1.0]
    assert "deadline" in info.value.__notes__[0]
    assert isinstance(events[-1], RetryGaveUp)
    assert events[-1].reason == "deadline"


@MODES
async def test_max_elapsed(clock: FakeClock, mode: str) -> None:
    fn = Flaky(Transient())
    retry = Retry(on=OSError, max_attempts=100, backoff=NO_JITTER, max_elapsed=10.0, clock=clock)
    with pytest.raises(Transient):
        await run(retry, fn, mode)
    assert clock.sleeps == [1.0, 2.0, 4.0]


class Throttled(Exception):
    def __init__(self, retry_after: object) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


def server_delay(outcome: object) -> Any:
    return getattr(outcome, "retry_after", None)


@MODES
async def test_retry_after_honoured_invalid_ignored_too_long_gives_up(clock: FakeClock, mode: str) -> None:
    retry = Retry(on=Exception, max_attempts=4, backoff=NO_JITTER, retry_after=server_delay, clock=clock)
    assert await run(retry, Flaky(Throttled(2.5), Throttled(-1), Throttled(math.nan), "ok"), mode) == "ok"
    # n is the retry index (1 and 2 for the second and third retries) whatever the first delay's source.
    assert clock.sleeps == [2.5, 2.0, 4.0]
    too_long = Throttled(600)
    with pytest.raises(Throttled) as info:
        await run(retry, Flaky(too_long, "ok"), mode)
    assert info.value is too_long
    assert clock.sleeps == [2.5, 2.0, 4.0]


@MODES
async def test_events(clock: FakeClock, mode: str, events: list[Event]) -> None:
    errors = [Transient("1"), Transient("2")]
    with pytest.raises(Transient):
        await run(Retry(on=OSError, max_attempts=2, backoff=NO_JITTER, name="svc", clock=clock), Flaky(*errors), mode)
    assert events == [
        RetryScheduled("svc", 1, 1.0, "backoff", errors[0], 0.0),
        RetryGaveUp("svc", 2, 1.0, "max_attempts", errors[1]),
    ]


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
        self.retries -= 1
        self.log.append(("acquire", self.retries >= 0))
        return self.retries >= 0


@MODES
async def test_budget(clock: FakeClock, mode: str, events: list[Event]) -> None:
    budget = FakeBudget(retries=1)
    fn = Flaky(Transient(), Transient(), "ok")
    with pytest.raises(Transient):
        await run(Retry(on=OSError, budget=budget, clock=clock), fn, mode)
    assert budget.log == [("failure", True), ("acquire", True), ("failure", False), ("acquire", False)]
    assert RetryBudgetExhausted("budget", 2) in events


class BlockingClock(FakeClock):
    """A fake clock whose async sleep blocks until cancelled, to cancel a task in its backoff sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sleeping.set()
        await asyncio.Event().wait()


@MODES
async def test_cancellation_during_backoff_sleep_propagates_and_is_not_retried(mode: str) -> None:
    clock = BlockingClock()
    fn = Flaky(Transient(), "ok")
    task = asyncio.create_task(run(Retry(on=BaseException, clock=clock), fn, mode))
    await clock.sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.calls == 1
    assert len(clock.sleeps) == 1


async def test_concurrent_calls_keep_their_own_state(clock: FakeClock) -> None:
    retry = Retry(on=OSError, max_attempts=3, backoff=Backoff.constant(0.5), clock=clock)

    async def call(i: int) -> int:
        fn = Flaky(Transient(), Transient(), i) if i % 2 else Flaky(i)
        result = await retry.run(fn)
        assert fn.calls == (3 if i % 2 else 1)
        return result  # type: ignore[no-any-return]

    assert await asyncio.gather(*(call(i) for i in range(50))) == list(range(50))
    assert clock.sleeps == [0.5] * 50


def test_async_decorator_keeps_metadata() -> None:
    async def fetch(url: str) -> str:
        """Fetch."""
        return url

    wrapped = Retry(on=OSError)(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "fetch"
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    wrapped_general = Retry(on=OSError, on_result=lambda r: False)(fetch)
    assert inspect.iscoroutinefunction(wrapped_general)


async def test_async_generator_function_is_refused() -> None:
    async def agen() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        Retry(on=OSError)(agen)
