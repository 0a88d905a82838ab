"""CircuitBreaker drivers with the rate models: count and time windows, slow calls, on_result, concurrency."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import stalwart as sw
from stalwart.testing import FakeClock

WAIT = 30.0


class Boom(Exception):
    pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0)


def fail() -> None:
    raise Boom


def ok() -> str:
    return "ok"


def outcomes(breaker: sw.CircuitBreaker, script: str) -> None:
    for step in script:
        if step == "f":
            with pytest.raises(Boom):
                breaker.call(fail)
        else:
            assert breaker.call(ok) == "ok"


def test_count_window_opens_at_the_failure_rate(clock: FakeClock) -> None:
    breaker = sw.CircuitBreaker(
        "rates", window=sw.CountWindow(10), minimum_calls=10, failure_rate_threshold=50.0, clock=clock
    )
    outcomes(breaker, "sfsfsfsfs")
    stats = breaker.statistics()
    assert (stats.calls, stats.failure_count, stats.success_count, stats.failure_rate) == (9, 4, 5, None)
    outcomes(breaker, "s")
    assert breaker.statistics().failure_rate == 40.0
    outcomes(breaker, "f")  # the window is the last 10: 5 failures
    assert breaker.state is sw.CircuitState.OPEN
    with pytest.raises(sw.CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.retry_after == 30.0
    stats = breaker.statistics()
    assert (stats.state, stats.calls, stats.failure_rate) == (sw.CircuitState.OPEN, 10, 50.0)


def test_time_window_with_a_fake_clock(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stalwart")
    breaker = sw.CircuitBreaker(
        "timed", window=sw.TimeWindow(10), minimum_calls=4, failure_rate_threshold=50.0, clock=clock
    )
    outcomes(breaker, "fff")
    clock.advance(10.0)  # the failures leave the window
    outcomes(breaker, "ssf")
    assert breaker.state is sw.CircuitState.CLOSED
    clock.advance(5.0)
    outcomes(breaker, "f")  # 2 of 4
    assert breaker.state is sw.CircuitState.OPEN
    assert "closed -> open (failure_rate 50.0%)" in caplog.text


def test_statistics_apply_the_time_window_and_publish_the_transition(clock: FakeClock) -> None:
    breaker = sw.CircuitBreaker(
        "evict", window=sw.TimeWindow(2), minimum_calls=2, failure_rate_threshold=60.0, clock=clock
    )
    outcomes(breaker, "ss")
    clock.advance(1.0)
    outcomes(breaker, "ff")
    assert breaker.statistics().failure_rate == 50.0
    clock.advance(1.0)  # the successes leave: 2 of 2 failed
    received: list[object] = []
    sw.add_hook(received.append)
    try:
        stats = breaker.statistics()
    finally:
        sw.remove_hook(received.append)
    assert stats.state is sw.CircuitState.OPEN
    assert received == [
        sw.CircuitRateExceeded("evict", "failure_rate", 100.0, 60.0),
        sw.CircuitStateChanged("evict", "closed", "open", 1002.0, "failure_rate"),
    ]


def test_slow_calls_open_the_breaker(clock: FakeClock) -> None:
    breaker = sw.CircuitBreaker(
        "slow",
        window=sw.CountWindow(4),
        minimum_calls=4,
        slow_call_duration=2.0,
        slow_call_rate_threshold=50.0,
        clock=clock,
    )

    def takes(seconds: float) -> str:
        clock.advance(seconds)
        return "done"

    breaker.call(takes, 0.1)
    breaker.call(takes, 2.5)
    breaker.call(takes, 0.1)
    assert breaker.state is sw.CircuitState.CLOSED
    breaker.call(takes, 2.0)  # 2 of 4 slow (a duration equal to slow_call_duration is slow)
    assert breaker.state is sw.CircuitState.OPEN
    stats = breaker.statistics()
    assert (stats.slow_call_count, stats.slow_call_rate, stats.failure_rate) == (2, 50.0, 0.0)


async def test_hung_calls_count_as_slow_before_they_end(clock: FakeClock) -> None:
    breaker = sw.CircuitBreaker(
        "hung",
        window=sw.TimeWindow(60),
        minimum_calls=3,
        slow_call_duration=5.0,
        slow_call_rate_threshold=50.0,
        clock=clock,
    )
    release = asyncio.Event()
    started = 0

    async def hang() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "late"

    async def fast() -> str:
        return "ok"

    hung = [asyncio.create_task(breaker.run(hang)) for _ in range(2)]
    while started < 2:
        await asyncio.sleep(0)
    assert await breaker.run(fast) == "ok"
    clock.advance(5.0)  # both hung calls have now run for 5 s: 2 slow of 3 calls, before either ends
    with pytest.raises(sw.CircuitOpenError):
        await breaker.run(fast)
    assert breaker.state is sw.CircuitState.OPEN
    release.set()
    assert await asyncio.gather(*hung) == ["late", "late"]
    assert breaker.statistics().retry_after == 30.0  # their late results do not touch the OPEN breaker


def test_on_result_with_a_window(clock: FakeClock) -> None:
    breaker = sw.CircuitBreaker(
        "http",
        window=sw.CountWindow(4),
        minimum_calls=4,
        on_result=lambda status: status == 503,
        clock=clock,
    )
    for status in (200, 404, 503):
        assert breaker.call(lambda s=status: s) == status
    assert breaker.state is sw.CircuitState.CLOSED
    breaker.call(lambda: 503)
    assert breaker.state is sw.CircuitState.OPEN


def test_permit_api_with_durations(clock: FakeClock) -> None:
    breaker = sw.CircuitBreaker(
        "api", window=sw.CountWindow(2), minimum_calls=2, slow_call_duration=1.0, slow_call_rate_threshold=100.0
    )
    first = breaker.acquire()
    second = breaker.acquire()
    breaker.record_success(first, 1.5)
    breaker.record_failure(second, 3.0)
    assert breaker.state is sw.CircuitState.OPEN
    breaker.reset()
    permit = breaker.acquire()
    breaker.release(permit)
    assert breaker.statistics().calls == 0


async def test_async_rate_model(clock: FakeClock) -> None:
    breaker = sw.CircuitBreaker("arates", window=sw.CountWindow(4), minimum_calls=4, clock=clock)

    @breaker
    async def maybe(fail_it: bool) -> str:
        if fail_it:
            raise Boom
        return "ok"

    for fail_it in (False, True, False):
        try:
            await maybe(fail_it)
        except Boom:
            pass
    assert breaker.state is sw.CircuitState.CLOSED
    with pytest.raises(Boom):
        await maybe(True)  # 2 of 4
    with pytest.raises(sw.CircuitOpenError):
        await maybe(False)


async def test_rate_model_half_open_admits_exactly_its_probes(clock: FakeClock) -> None:
    breaker = sw.CircuitBreaker(
        "probes", window=sw.CountWindow(2), minimum_calls=2, half_open_max_calls=5, reset_timeout=1.0, clock=clock
    )
    outcomes(breaker, "ff")
    clock.advance(1.0)
    gate = asyncio.Event()
    entered = 0

    async def probe() -> str:
        nonlocal entered
        entered += 1
        await gate.wait()
        return "ok"

    async def caller() -> str:
        await asyncio.sleep(0)
        try:
            return await breaker.run(probe)
        except sw.CircuitOpenError:
            return "rejected"

    tasks = [asyncio.create_task(caller()) for _ in range(1000)]
    while sum(t.done() for t in tasks) < 995 and entered <= 5:
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert entered == 5
    assert results.count("ok") == 5
    assert breaker.state is sw.CircuitState.CLOSED


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("frequent_thread_switches")
@pytest.mark.parametrize("window", [sw.CountWindow(100_000), sw.TimeWindow(3600)])
def test_threads_keep_window_counts_exact(window: sw.CountWindow | sw.TimeWindow) -> None:
    clock = FakeClock()
    breaker = sw.CircuitBreaker("exact", window=window, minimum_calls=10**6, clock=clock)
    start = threading.Event()

    def worker(i: int) -> None:
        start.wait(WAIT)
        for j in range(1000):
            if (i * 1000 + j) % 7 == 0:
                with pytest.raises(Boom):
                    breaker.call(fail)
            else:
                breaker.call(ok)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(worker, i) for i in range(8)]
        start.set()
        for f in futures:
            f.result(WAIT)
    stats = breaker.statistics()
    failures = sum(1 for n in range(8000) if n % 7 == 0)
    assert (stats.calls, stats.failure_count, stats.success_count) == (8000, failures, 8000 - failures)


def test_registry_compares_windows() -> None:
    reg = sw.Registry()
    a = reg.breaker("w", window=sw.CountWindow(50), minimum_calls=20)
    assert reg.breaker("w", window=sw.CountWindow(50)) is a
    with pytest.raises(ValueError, match="window"):
        reg.breaker("w", window=sw.TimeWindow(50))
    snapshot = reg.snapshot()["circuits"]["w"]
    assert snapshot == {
        "state": "closed",
        "failure_rate": None,
        "slow_call_rate": None,
        "calls": 0,
        "retry_after": None,
    }


@pytest.mark.parametrize(
    ("config", "error", "parameter"),
    [
        ({"slow_call_duration": 1.0}, ValueError, "slow_call_duration"),
        ({"window": sw.CountWindow(5), "failure_rate_threshold": 0}, ValueError, "failure_rate_threshold"),
        ({"window": sw.CountWindow(5), "minimum_calls": 0}, ValueError, "minimum_calls"),
        ({"window": 5}, TypeError, "window"),
    ],
)
def test_invalid_rate_configuration(config: dict[str, object], error: type[Exception], parameter: str) -> None:
    with pytest.raises(error, match=parameter):
        sw.CircuitBreaker("bad", **config)  # type: ignore[arg-type]
