"""Pipeline.standard with the real policies: Fallback, Timeout, Retry, CircuitBreaker, Bulkhead (fake clock)."""

from __future__ import annotations

import asyncio

import stalwart as sw
from stalwart.testing import FakeClock

FOREVER = 60.0


class SleepProbe(FakeClock):
    """A fake clock that notes the bulkhead's active count whenever the retry sleeps."""

    def __init__(self, bulkhead: sw.Bulkhead) -> None:
        super().__init__()
        self.bulkhead = bulkhead
        self.active_while_sleeping: list[int] = []

    async def asleep(self, seconds: float) -> None:
        self.active_while_sleeping.append(self.bulkhead.statistics().active)
        await super().asleep(seconds)


def standard_with(
    clock: SleepProbe, bulkhead: sw.Bulkhead, *, failure_threshold: int, attempt_timeout: float = FOREVER
) -> tuple[sw.Pipeline, sw.CircuitBreaker]:
    breaker = sw.CircuitBreaker("dep", failure_threshold=failure_threshold, clock=clock)
    pipeline = sw.Pipeline.standard(
        fallback=sw.Fallback(value="fallback"),
        total_timeout=FOREVER,
        retry=sw.Retry(
            on=(ConnectionError, TimeoutError), max_attempts=4, backoff=sw.Backoff.constant(1.0), clock=clock
        ),
        breaker=breaker,
        bulkhead=bulkhead,
        attempt_timeout=attempt_timeout,
    )
    return pipeline, breaker


async def test_standard_retries_without_holding_a_bulkhead_slot_while_sleeping() -> None:
    bulkhead = sw.Bulkhead("dep", max_concurrent=1)
    clock = SleepProbe(bulkhead)
    pipeline, breaker = standard_with(clock, bulkhead, failure_threshold=10)
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        assert bulkhead.statistics().active == 1  # the attempt holds the slot
        assert sw.current_deadline() is not None  # the per-attempt timeout is the ambient deadline
        if attempts < 3:
            raise ConnectionError
        return "ok"

    assert await pipeline.run(flaky) == "ok"
    assert attempts == 3
    assert clock.sleeps == [1.0, 1.0]
    assert clock.active_while_sleeping == [0, 0]
    stats = breaker.statistics()
    assert (stats.calls, stats.failure_count, stats.consecutive_failures) == (3, 2, 0)  # it saw every attempt
    assert bulkhead.statistics().active == 0


async def test_standard_open_breaker_ends_the_retries_and_the_fallback_answers() -> None:
    bulkhead = sw.Bulkhead("dep", max_concurrent=1)
    clock = SleepProbe(bulkhead)
    pipeline, breaker = standard_with(clock, bulkhead, failure_threshold=2)
    attempts = 0

    async def down() -> str:
        nonlocal attempts
        attempts += 1
        raise ConnectionError

    assert await pipeline.run(down) == "fallback"
    assert attempts == 2  # the third attempt met the open breaker: no more retries
    assert breaker.state == sw.CircuitState.OPEN
    assert bulkhead.statistics().active == 0


async def test_standard_per_attempt_timeout_is_an_attempt_failure_that_is_retried() -> None:
    bulkhead = sw.Bulkhead("dep", max_concurrent=1)
    clock = SleepProbe(bulkhead)
    pipeline, breaker = standard_with(clock, bulkhead, failure_threshold=10, attempt_timeout=0.01)
    attempts = 0

    async def slow_once() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(FOREVER)
        return "ok"

    assert await pipeline.run(slow_once) == "ok"
    assert attempts == 2
    assert breaker.statistics().failure_count == 1  # the breaker counted the timed-out attempt
    assert bulkhead.statistics().active == 0


def test_standard_sync() -> None:
    bulkhead = sw.Bulkhead("dep", max_concurrent=1)
    clock = SleepProbe(bulkhead)
    pipeline, _ = standard_with(clock, bulkhead, failure_threshold=10)
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ConnectionError
        return "ok"

    assert pipeline.call(flaky) == "ok"
    assert attempts == 2
    assert clock.sleeps == [1.0]
    assert pipeline.call(lambda: 1 / 0) == "fallback"
