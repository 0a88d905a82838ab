"""CircuitBreaker drivers (sync and async) on a fake clock: transitions, classification, events, controls."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

import stalwart as sw
from stalwart._events import add_hook, remove_hook
from stalwart.testing import FakeClock


class Boom(Exception):
    pass


class NotFound(Exception):
    pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=100.0)


@pytest.fixture
def events() -> Iterator[list[object]]:
    received: list[object] = []
    add_hook(received.append)
    yield received
    remove_hook(received.append)


def make(clock: FakeClock, **config: object) -> sw.CircuitBreaker:
    config.setdefault("reset_timeout", 30.0)
    return sw.CircuitBreaker("dep", clock=clock, **config)  # type: ignore[arg-type]


def fail() -> None:
    raise Boom


async def afail() -> None:
    raise Boom


def ok() -> str:
    return "ok"


async def aok() -> str:
    return "ok"


def trip(breaker: sw.CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            breaker.call(fail)


# --- consecutive model, sync ---------------------------------------------------------------------------------------


def test_opens_after_failure_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=3)
    trip(breaker, 2)
    assert breaker.call(ok) == "ok"  # a success resets the count
    trip(breaker, 2)
    assert breaker.state is sw.CircuitState.CLOSED
    trip(breaker, 1)
    assert breaker.state is sw.CircuitState.OPEN
    called = []
    with pytest.raises(sw.CircuitOpenError) as info:
        breaker.call(called.append, 1)
    assert called == []
    assert info.value.name == "dep"
    assert info.value.retry_after == 30.0


def test_rejections_are_fresh_exceptions_with_a_shrinking_retry_after(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, reset_timeout=timedelta(seconds=10))
    trip(breaker, 1)
    errors = []
    for _ in range(3):
        with pytest.raises(sw.CircuitOpenError) as info:
            breaker.call(ok)
        errors.append(info.value)
        clock.advance(2.5)
    assert len({id(e) for e in errors}) == 3
    assert [e.retry_after for e in errors] == [10.0, 7.5, 5.0]
    assert all(isinstance(e, sw.Rejected) for e in errors)
    # the traceback of a rejection stays short: the breaker's frames, not a growing chain
    assert len(list(_frames(errors[-1]))) <= 3


def _frames(exc: BaseException) -> Iterator[object]:
    tb = exc.__traceback__
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def test_half_open_after_reset_timeout_closes_after_success_threshold(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, success_threshold=2, half_open_max_calls=2)
    trip(breaker, 1)
    clock.advance(30.0)
    assert breaker.state is sw.CircuitState.OPEN  # checked lazily: no background task
    assert breaker.call(ok) == "ok"
    assert breaker.state is sw.CircuitState.HALF_OPEN
    assert breaker.call(ok) == "ok"
    assert breaker.state is sw.CircuitState.CLOSED


def test_failing_probe_reopens_for_a_full_period(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    trip(breaker, 1)
    clock.advance(31.0)
    trip(breaker, 1)
    assert breaker.state is sw.CircuitState.OPEN
    with pytest.raises(sw.CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.retry_after == 30.0


def test_half_open_rejects_beyond_max_calls_with_unknown_retry_after(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, half_open_max_calls=1, success_threshold=1)
    trip(breaker, 1)
    clock.advance(30.0)
    permit = breaker.acquire()
    with pytest.raises(sw.CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.retry_after is None
    breaker.record_success(permit)
    assert breaker.state is sw.CircuitState.CLOSED


def test_open_period_backoff_from_a_schedule(clock: FakeClock) -> None:
    class Doubling:
        def delay(self, n: int, previous: float, random: object) -> float:
            return min(100.0, 10.0 * 2**n)

    breaker = make(clock, failure_threshold=1, reset_timeout=Doubling(), half_open_max_calls=1, success_threshold=1)
    seen = []
    for _ in range(4):
        trip(breaker, 1)
        with pytest.raises(sw.CircuitOpenError) as info:
            breaker.call(ok)
        assert info.value.retry_after is not None
        seen.append(info.value.retry_after)
        clock.advance(info.value.retry_after)
    assert seen == [10.0, 20.0, 40.0, 80.0]
    assert breaker.call(ok) == "ok"  # clean close: the next opening is short again
    trip(breaker, 1)
    assert breaker.statistics().retry_after == 10.0


# --- what counts ---------------------------------------------------------------------------------------------------


def test_exceptions_outside_on_count_as_success(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2, on=Boom)
    trip(breaker, 1)
    with pytest.raises(NotFound):
        breaker.call(_raise, NotFound())
    trip(breaker, 1)
    assert breaker.state is sw.CircuitState.CLOSED
    assert breaker.statistics().calls == 3


def _raise(exc: BaseException) -> None:
    raise exc


def test_excluded_exceptions_are_neither_success_nor_failure_and_return_the_permit(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2, exclude=NotFound, half_open_max_calls=1, success_threshold=1)
    trip(breaker, 1)
    with pytest.raises(NotFound):
        breaker.call(_raise, NotFound())
    assert breaker.statistics().consecutive_failures == 1  # not reset: no success recorded
    assert breaker.statistics().calls == 1
    trip(breaker, 1)
    assert breaker.state is sw.CircuitState.OPEN
    clock.advance(30.0)
    for _ in range(3):  # each excluded probe returns its permit, so the single probe slot is never lost
        with pytest.raises(NotFound):
            breaker.call(_raise, NotFound())
    assert breaker.state is sw.CircuitState.HALF_OPEN
    assert breaker.call(ok) == "ok"
    assert breaker.state is sw.CircuitState.CLOSED


@pytest.mark.parametrize(
    "exc",
    [sw.BulkheadFullError("b", 1, 0), sw.CircuitOpenError("inner", 1.0), KeyboardInterrupt(), SystemExit(1)],
)
def test_rejections_and_interpreter_exits_never_count(clock: FakeClock, exc: BaseException) -> None:
    breaker = make(clock, failure_threshold=1, on=BaseException)
    with pytest.raises(type(exc)):
        breaker.call(_raise, exc)
    assert breaker.state is sw.CircuitState.CLOSED
    assert breaker.statistics().calls == 0


def test_on_predicate_and_is_failure(clock: FakeClock) -> None:
    breaker = make(clock, on=lambda e: isinstance(e, Boom) and "transient" in str(e), exclude=(NotFound,))
    assert breaker.is_failure(Boom("transient"))
    assert not breaker.is_failure(Boom("permanent"))
    assert not breaker.is_failure(NotFound())
    assert not breaker.is_failure(asyncio.CancelledError())
    assert not breaker.is_failure(sw.CircuitOpenError("x"))


def test_on_result_marks_results_as_failures(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2, on_result=lambda status: status >= 500)
    assert breaker.call(lambda: 503) == 503
    assert breaker.call(lambda: 404) == 404  # answered: a success
    assert breaker.call(lambda: 503) == 503
    assert breaker.state is sw.CircuitState.CLOSED
    assert breaker.call(lambda: 502) == 502
    assert breaker.state is sw.CircuitState.OPEN


def test_on_result_that_raises_returns_the_permit(clock: FakeClock) -> None:
    def broken(result: object) -> bool:
        raise RuntimeError("predicate bug")

    breaker = make(clock, failure_threshold=1, on_result=broken, half_open_max_calls=1, success_threshold=1)
    breaker.transition_to(sw.CircuitState.HALF_OPEN)
    with pytest.raises(RuntimeError, match="predicate bug"):
        breaker.call(ok)
    assert breaker.statistics().half_open_probes == 0


# --- stale results -------------------------------------------------------------------------------------------------


def test_results_of_calls_started_before_a_transition_are_ignored(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2, half_open_max_calls=1, success_threshold=1)
    slow_calls = [breaker.acquire() for _ in range(3)]
    trip(breaker, 2)
    assert breaker.state is sw.CircuitState.OPEN
    clock.advance(20.0)
    breaker.record_failure(slow_calls[0])  # must not extend the open period
    assert breaker.statistics().retry_after == 10.0
    clock.advance(10.0)
    probe = breaker.acquire()
    breaker.record_success(slow_calls[1])  # must not close the breaker or free the probe slot
    assert breaker.state is sw.CircuitState.HALF_OPEN
    breaker.release(slow_calls[2])
    with pytest.raises(sw.CircuitOpenError):
        breaker.acquire()
    breaker.record_success(probe)
    assert breaker.state is sw.CircuitState.CLOSED


# --- async ---------------------------------------------------------------------------------------------------------


async def test_async_run_and_decorator(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2, half_open_max_calls=1, success_threshold=1)

    @breaker
    async def flaky(fail_it: bool) -> str:
        await asyncio.sleep(0)
        if fail_it:
            raise Boom
        return "ok"

    assert inspect.iscoroutinefunction(flaky)
    assert await flaky(False) == "ok"
    for _ in range(2):
        with pytest.raises(Boom):
            await flaky(True)
    with pytest.raises(sw.CircuitOpenError):
        await flaky(False)
    with pytest.raises(sw.CircuitOpenError):
        await breaker.run(aok)
    clock.advance(30.0)
    assert await breaker.run(aok) == "ok"
    assert breaker.state is sw.CircuitState.CLOSED


async def test_async_failures_and_exclusions(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, exclude=NotFound)

    async def not_found() -> None:
        raise NotFound

    with pytest.raises(NotFound):
        await breaker.run(not_found)
    assert breaker.state is sw.CircuitState.CLOSED
    with pytest.raises(Boom):
        await breaker.run(afail)
    assert breaker.state is sw.CircuitState.OPEN


async def test_cancelled_probe_returns_its_permit(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, half_open_max_calls=1, success_threshold=1)
    trip(breaker, 1)
    clock.advance(30.0)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.run(hang))
    await started.wait()
    assert breaker.state is sw.CircuitState.HALF_OPEN
    with pytest.raises(sw.CircuitOpenError):
        await breaker.run(aok)  # the single probe is out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.statistics().half_open_probes == 0
    assert breaker.state is sw.CircuitState.HALF_OPEN  # a cancellation is no outcome
    assert await breaker.run(aok) == "ok"
    assert breaker.state is sw.CircuitState.CLOSED


async def test_cancellation_in_closed_state_is_not_a_failure(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await breaker.run(cancelled)
    assert breaker.state is sw.CircuitState.CLOSED


async def test_deadline_exceeded_counts_as_a_failure(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)

    async def too_slow() -> None:
        raise sw.DeadlineExceeded("attempt timed out", timeout=1.0)

    with pytest.raises(sw.DeadlineExceeded):
        await breaker.run(too_slow)
    assert breaker.state is sw.CircuitState.OPEN


# --- decorator -----------------------------------------------------------------------------------------------------


def test_sync_decorator_keeps_metadata_and_passes_arguments(clock: FakeClock) -> None:
    breaker = make(clock)

    @breaker
    def add(a: int, b: int = 2) -> int:
        """Add."""
        return a + b

    assert add(1) == 3
    assert add(1, b=5) == 6
    assert add.__name__ == "add"
    assert add.__doc__ == "Add."
    assert inspect.signature(add) == inspect.signature(add.__wrapped__)  # type: ignore[attr-defined]


def test_generators_are_refused(clock: FakeClock) -> None:
    breaker = make(clock)

    def gen() -> Iterator[int]:
        yield 1

    async def agen():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(TypeError, match="generator"):
        breaker(gen)
    with pytest.raises(TypeError, match="generator"):
        breaker(agen)


# --- events, logs, statistics, controls ----------------------------------------------------------------------------


def test_transitions_are_logged_and_emitted(
    clock: FakeClock, events: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stalwart")
    breaker = make(clock, failure_threshold=1, half_open_max_calls=1, success_threshold=1)
    trip(breaker, 1)
    with pytest.raises(sw.CircuitOpenError):
        breaker.call(ok)
    clock.advance(30.0)
    breaker.call(ok)
    changes = [e for e in events if isinstance(e, sw.CircuitStateChanged)]
    assert [(e.from_state, e.to_state, e.at) for e in changes] == [
        ("closed", "open", 100.0),
        ("open", "half_open", 130.0),
        ("half_open", "closed", 130.0),
    ]
    assert [e for e in events if isinstance(e, sw.CallRejected)] == [sw.CallRejected("dep", "circuit_open")]
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "stalwart"]
    assert levels == [
        (logging.ERROR, "circuit breaker 'dep': closed -> open (consecutive_failures)"),
        (logging.WARNING, "circuit breaker 'dep': open -> half_open (reset_timeout)"),
        (logging.INFO, "circuit breaker 'dep': half_open -> closed (probes_succeeded)"),
    ]


def test_rejections_emit_nothing_without_hooks(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    breaker = make(clock, failure_threshold=1)
    trip(breaker, 1)
    caplog.clear()
    with pytest.raises(sw.CircuitOpenError):
        breaker.call(ok)
    assert caplog.records == []


def test_statistics(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=3)
    breaker.call(ok)
    trip(breaker, 2)
    stats = breaker.statistics()
    assert stats == sw.CircuitStatistics(
        name="dep",
        state=sw.CircuitState.CLOSED,
        calls=3,
        failure_count=2,
        success_count=1,
        slow_call_count=0,
        consecutive_failures=2,
        failure_rate=None,
        slow_call_rate=None,
        retry_after=None,
        half_open_probes=0,
        openings=0,
    )
    trip(breaker, 1)
    clock.advance(12.0)
    stats = breaker.statistics()
    assert (stats.state, stats.calls, stats.retry_after, stats.openings) == (sw.CircuitState.OPEN, 0, 18.0, 1)
    with pytest.raises(AttributeError):
        stats.calls = 5  # type: ignore[misc]


def test_manual_controls(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    breaker.force_open()
    with pytest.raises(sw.CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.retry_after is None
    clock.advance(1e6)
    with pytest.raises(sw.CircuitOpenError):
        breaker.call(ok)
    breaker.disable()
    for _ in range(5):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state is sw.CircuitState.DISABLED
    breaker.transition_to("metrics_only")
    trip(breaker, 3)
    assert breaker.state is sw.CircuitState.METRICS_ONLY
    assert breaker.statistics().consecutive_failures == 3
    breaker.transition_to(sw.CircuitState.OPEN)
    assert breaker.statistics().retry_after == 30.0
    breaker.reset()
    assert breaker.state is sw.CircuitState.CLOSED
    assert breaker.call(ok) == "ok"
    with pytest.raises(ValueError, match="ajar"):
        breaker.transition_to("ajar")


def test_reset_invalidates_calls_in_flight(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    permit = breaker.acquire()
    breaker.reset()
    breaker.record_failure(permit)
    assert breaker.state is sw.CircuitState.CLOSED


@pytest.mark.parametrize(
    ("config", "error", "parameter"),
    [
        ({"success_threshold": 4}, ValueError, "success_threshold"),
        ({"failure_threshold": 0}, ValueError, "failure_threshold"),
        ({"reset_timeout": -1}, ValueError, "reset_timeout"),
        ({"max_half_open_wait": 0}, ValueError, "max_half_open_wait"),
        ({"on": "Boom"}, TypeError, "on"),
        ({"exclude": 3}, TypeError, "exclude"),
        ({"on_result": 3}, TypeError, "on_result"),
    ],
)
def test_invalid_configuration(config: dict[str, object], error: type[Exception], parameter: str) -> None:
    with pytest.raises(error, match=parameter):
        sw.CircuitBreaker("x", **config)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", None, 3])
def test_name_is_required(name: object) -> None:
    with pytest.raises(ValueError, match="name"):
        sw.CircuitBreaker(name)  # type: ignore[arg-type]


def test_repr_and_config(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=7, reset_timeout=timedelta(seconds=5))
    assert repr(breaker) == "CircuitBreaker('dep', state='closed')"
    assert breaker.config.failure_threshold == 7
    assert breaker.config.reset_timeout == 5.0


def test_reset_timeout_accepts_a_backoff_with_jitter(clock: FakeClock) -> None:
    draws = iter([0.5, 1.0, 0.25, 0.0])
    breaker = make(
        clock,
        failure_threshold=1,
        half_open_max_calls=1,
        success_threshold=1,
        reset_timeout=sw.Backoff.exponential(initial=10.0, max_delay=60.0, jitter=sw.Jitter.FULL),
        random=lambda: next(draws),
    )
    periods = []
    for _ in range(3):
        trip(breaker, 1)
        retry_after = breaker.statistics().retry_after
        assert retry_after is not None
        periods.append(retry_after)
        clock.advance(retry_after)
    schedule = sw.Backoff.exponential(initial=10.0, max_delay=60.0)
    expected, previous = [], 0.0
    for n, draw in enumerate([0.5, 1.0, 0.25]):
        previous = schedule.delay(n, previous, lambda d=draw: d)
        expected.append(previous)
    assert periods == expected
    assert len(set(periods)) == 3


def test_a_coroutine_returned_to_the_sync_path_is_refused_and_its_permit_returned(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, half_open_max_calls=1, success_threshold=1)
    breaker.transition_to("half_open")

    def sneaky() -> object:  # a sync function returning a coroutine: nothing would be protected
        return aok()

    with pytest.raises(TypeError, match="coroutine"):
        breaker.call(sneaky)
    with pytest.raises(TypeError, match="coroutine"):
        breaker(sneaky)()
    stats = breaker.statistics()
    assert (stats.state, stats.half_open_probes, stats.calls) == (sw.CircuitState.HALF_OPEN, 0, 0)
    assert breaker.call(ok) == "ok"
    assert breaker.state is sw.CircuitState.CLOSED
