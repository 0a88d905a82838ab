"""Circuit-breaker events: per-call outcomes, rate exceeded, transitions with reasons; nothing built without hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import stalwart as sw
import stalwart._breaker
from stalwart.testing import FakeClock


class Boom(Exception):
    pass


class NotFound(Exception):
    pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Iterator[list[object]]:
    received: list[object] = []
    sw.add_hook(received.append)
    yield received
    sw.remove_hook(received.append)


def _raise(exc: BaseException) -> None:
    raise exc


def test_call_outcomes_with_measured_durations(clock: FakeClock, events: list[object]) -> None:
    breaker = sw.CircuitBreaker("ev", exclude=NotFound, clock=clock)

    @breaker
    def work(seconds: float, exc: BaseException | None = None) -> str:
        clock.advance(seconds)
        if exc is not None:
            raise exc
        return "ok"

    work(0.25)
    with pytest.raises(Boom):
        work(1.5, Boom())
    with pytest.raises(NotFound):
        work(0.5, NotFound())
    assert events == [
        sw.CircuitCallRecorded("ev", "success", 0.25),
        sw.CircuitCallRecorded("ev", "failure", 1.5),
        sw.CircuitCallRecorded("ev", "ignored", None),
    ]


async def test_async_outcomes_and_cancellation(clock: FakeClock, events: list[object]) -> None:
    breaker = sw.CircuitBreaker("aev", clock=clock)

    async def hang() -> None:
        await asyncio.Event().wait()

    async def ok() -> str:
        clock.advance(0.5)
        return "ok"

    assert await breaker.run(ok) == "ok"
    task = asyncio.create_task(breaker.run(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == [sw.CircuitCallRecorded("aev", "success", 0.5), sw.CircuitCallRecorded("aev", "ignored", None)]


@pytest.mark.parametrize("window", [None, sw.CountWindow(10), sw.TimeWindow(10)])
def test_counts_stay_right_when_hooks_are_installed(clock: FakeClock, events: list[object], window: object) -> None:
    breaker = sw.CircuitBreaker("hooked", window=window, minimum_calls=5, failure_threshold=3, clock=clock)  # type: ignore[arg-type]
    decorated = breaker(lambda: "ok")
    for _ in range(3):
        decorated()
        breaker.call(lambda: "ok")
    stats = breaker.statistics()
    assert (stats.calls, stats.success_count) == (6, 6)
    assert len(events) == 6


def test_permit_api_events(events: list[object]) -> None:
    breaker = sw.CircuitBreaker("api")
    breaker.record_success(breaker.acquire(), 1.25)
    breaker.record_failure(breaker.acquire(), 2.0)
    breaker.release(breaker.acquire())
    assert events == [
        sw.CircuitCallRecorded("api", "success", 1.25),
        sw.CircuitCallRecorded("api", "failure", 2.0),
        sw.CircuitCallRecorded("api", "ignored", None),
    ]


def test_rate_exceeded_precedes_the_transition(clock: FakeClock, events: list[object]) -> None:
    breaker = sw.CircuitBreaker(
        "rate",
        window=sw.CountWindow(4),
        minimum_calls=4,
        failure_rate_threshold=50.0,
        slow_call_duration=1.0,
        slow_call_rate_threshold=75.0,
        clock=clock,
    )
    for exc in (None, Boom(), None, Boom()):
        if exc is None:
            breaker.call(lambda: None)
        else:
            with pytest.raises(Boom):
                breaker.call(_raise, exc)
    tail = [e for e in events if not isinstance(e, sw.CircuitCallRecorded)]
    assert tail == [
        sw.CircuitRateExceeded("rate", "failure_rate", 50.0, 50.0),
        sw.CircuitStateChanged("rate", "closed", "open", 0.0, "failure_rate"),
    ]


def test_slow_call_rate_exceeded(clock: FakeClock, events: list[object]) -> None:
    breaker = sw.CircuitBreaker(
        "slowrate", window=sw.CountWindow(2), minimum_calls=2, slow_call_duration=1.0, clock=clock
    )
    for _ in range(2):
        breaker.call(clock.advance, 1.0)
    assert sw.CircuitRateExceeded("slowrate", "slow_call_rate", 100.0, 100.0) in events


def test_transition_reasons(clock: FakeClock, events: list[object]) -> None:
    breaker = sw.CircuitBreaker("why", failure_threshold=1, half_open_max_calls=1, success_threshold=1, clock=clock)
    with pytest.raises(Boom):
        breaker.call(_raise, Boom())
    clock.advance(30.0)
    breaker.call(lambda: None)
    breaker.force_open()
    changes = [(e.to_state, e.reason) for e in events if isinstance(e, sw.CircuitStateChanged)]
    assert changes == [
        ("open", "consecutive_failures"),
        ("half_open", "reset_timeout"),
        ("closed", "probes_succeeded"),
        ("forced_open", "manual"),
    ]


def test_no_event_is_built_without_hooks(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    built: list[object] = []
    monkeypatch.setattr(stalwart._breaker, "emit", built.append)
    monkeypatch.setattr(stalwart._breaker, "CircuitCallRecorded", lambda *a: built.append(a))
    breaker = sw.CircuitBreaker("quiet", failure_threshold=1, clock=clock)
    breaker.call(lambda: None)
    with pytest.raises(Boom):
        breaker.call(_raise, Boom())
    with pytest.raises(sw.CircuitOpenError):
        breaker.call(lambda: None)
    breaker.reset()
    breaker.release(breaker.acquire())
    assert built == []
