"""Concurrency: exactly ``half_open_max_calls`` probes however many threads and tasks race; no leaked permits."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import stalwart as sw
from stalwart._events import add_hook, remove_hook
from stalwart.testing import FakeClock

WAIT = 30.0  # a safety net for a broken implementation, never reached by a passing run


class Boom(Exception):
    pass


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """Make the GIL switch threads far more often than usual, so races between threads really happen."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def opened_breaker(clock: FakeClock, half_open_max_calls: int = 3) -> sw.CircuitBreaker:
    """A breaker whose open period has just ended: the next caller makes it HALF_OPEN."""
    breaker = sw.CircuitBreaker(
        "racy",
        failure_threshold=1,
        reset_timeout=10.0,
        half_open_max_calls=half_open_max_calls,
        success_threshold=half_open_max_calls,
        clock=clock,
    )

    def fail() -> None:
        raise Boom

    with pytest.raises(Boom):
        breaker.call(fail)
    clock.advance(10.0)
    assert breaker.state is sw.CircuitState.OPEN
    return breaker


async def test_thousand_tasks_race_for_three_probes() -> None:
    breaker = opened_breaker(FakeClock())
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
    while sum(t.done() for t in tasks) < 997 and entered <= 3:
        await asyncio.sleep(0)
    assert entered == 3
    assert breaker.state is sw.CircuitState.HALF_OPEN
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results.count("ok") == 3
    assert results.count("rejected") == 997
    assert breaker.state is sw.CircuitState.CLOSED


def test_thread_pool_races_for_three_probes() -> None:
    breaker = opened_breaker(FakeClock())
    gate = threading.Event()
    start = threading.Event()
    entered = []
    lock = threading.Lock()

    def probe() -> str:
        with lock:
            entered.append(threading.get_ident())
        assert gate.wait(WAIT)
        return "ok"

    def one_call() -> str:
        start.wait(WAIT)
        try:
            return breaker.call(probe)
        except sw.CircuitOpenError:
            return "rejected"

    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(one_call) for _ in range(1000)]
        start.set()
        try:
            while sum(f.done() for f in futures) < 997 and len(entered) <= 3:  # all but the probes are done
                threading.Event().wait(0.001)
            assert len(entered) == 3
        finally:
            gate.set()
        results = [f.result(WAIT) for f in futures]
    assert results.count("ok") == 3
    assert results.count("rejected") == 997
    assert breaker.state is sw.CircuitState.CLOSED


async def test_threads_and_tasks_together_share_the_probes() -> None:
    breaker = opened_breaker(FakeClock(), half_open_max_calls=4)
    gate = threading.Event()
    lock = threading.Lock()
    entered = {"sync": 0, "async": 0}

    def sync_probe() -> str:
        with lock:
            entered["sync"] += 1
        assert gate.wait(WAIT)
        return "ok"

    async def async_probe() -> str:
        entered["async"] += 1
        while not gate.is_set():
            await asyncio.sleep(0.001)
        return "ok"

    def thread_worker() -> list[str]:
        out: list[str] = []
        for _ in range(25):  # until admitted once: a probe blocks its thread until the gate opens
            try:
                out.append(breaker.call(sync_probe))
                break
            except sw.CircuitOpenError:
                out.append("rejected")
        return out

    async def task() -> str:
        await asyncio.sleep(0)
        try:
            return await breaker.run(async_probe)
        except sw.CircuitOpenError:
            return "rejected"

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=20) as pool:
        threads = [loop.run_in_executor(pool, thread_worker) for _ in range(20)]
        tasks = [asyncio.create_task(task()) for _ in range(500)]
        # wait until every caller is either finished or inside a probe
        while entered["sync"] + entered["async"] <= 4 and (
            sum(f.done() for f in threads) + entered["sync"] < 20
            or sum(t.done() for t in tasks) + entered["async"] < 500
        ):
            await asyncio.sleep(0.001)
        gate.set()
        assert entered["sync"] + entered["async"] == 4
        results = [r for f in threads for r in await f] + list(await asyncio.gather(*tasks))
    assert results.count("ok") == 4
    assert len(results) - results.count("ok") == results.count("rejected")
    assert results.count("rejected") >= 496
    assert breaker.state is sw.CircuitState.CLOSED


async def test_cancelling_every_probe_returns_every_permit() -> None:
    clock = FakeClock()
    breaker = opened_breaker(clock)
    started = 0

    async def hang() -> None:
        nonlocal started
        started += 1
        await asyncio.Event().wait()

    async def caller() -> str:
        try:
            await breaker.run(hang)
        except sw.CircuitOpenError:
            return "rejected"
        return "done"

    tasks = [asyncio.create_task(caller()) for _ in range(1000)]
    while (started < 3 or sum(t.done() for t in tasks) < 997) and started <= 3:
        await asyncio.sleep(0)
    for t in tasks:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 3
    stats = breaker.statistics()
    assert stats.state is sw.CircuitState.HALF_OPEN
    assert stats.half_open_probes == 0
    assert stats.calls == 0
    # the period is not stuck: three new probes are admitted and close the breaker
    for _ in range(3):
        assert await breaker.run(asyncio.sleep, 0, "ok") == "ok"
    assert breaker.state is sw.CircuitState.CLOSED


def test_concurrent_failures_open_the_breaker_once() -> None:
    transitions: list[sw.CircuitStateChanged] = []

    def hook(event: object) -> None:
        if isinstance(event, sw.CircuitStateChanged):
            transitions.append(event)

    add_hook(hook)
    try:
        breaker = sw.CircuitBreaker("storm", failure_threshold=5, reset_timeout=60.0, clock=FakeClock())
        start = threading.Event()

        def fail() -> None:
            raise Boom

        def worker() -> int:
            start.wait(WAIT)
            rejected = 0
            for _ in range(50):
                try:
                    breaker.call(fail)
                except Boom:
                    pass
                except sw.CircuitOpenError:
                    rejected += 1
            return rejected

        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(worker) for _ in range(16)]
            start.set()
            rejected = sum(f.result(WAIT) for f in futures)
    finally:
        remove_hook(hook)
    assert [(t.name, t.from_state, t.to_state, t.at) for t in transitions] == [("storm", "closed", "open", 0.0)]
    assert rejected > 0
    assert breaker.statistics().retry_after == 60.0  # late failures did not extend the open period


def test_concurrent_successes_and_failures_keep_counts_consistent() -> None:
    breaker = sw.CircuitBreaker("counts", failure_threshold=10**9, clock=FakeClock())
    start = threading.Event()

    def fail() -> None:
        raise Boom

    def worker(i: int) -> None:
        start.wait(WAIT)
        for j in range(500):
            if (i + j) % 3 == 0:
                with pytest.raises(Boom):
                    breaker.call(fail)
            else:
                breaker.call(int)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(worker, i) for i in range(8)]
        start.set()
        for f in futures:
            f.result(WAIT)
    stats = breaker.statistics()
    assert stats.calls == 4000
    expected_failures = sum(1 for i in range(8) for j in range(500) if (i + j) % 3 == 0)
    assert stats.failure_count == expected_failures
    assert stats.success_count == 4000 - expected_failures
