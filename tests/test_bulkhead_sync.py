"""Bulkhead, sync side and mixed use: threads, the queue, timeouts, FIFO order, and one limit shared with tasks.

Threads are coordinated by polling the bulkhead's statistics (a waiter is visible in ``queued`` before it blocks);
nothing asserts on durations.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

import stalwart as sw
from stalwart.testing import FakeClock

FOREVER = 60.0


def stats(bulkhead: sw.Bulkhead) -> tuple[int, int, int]:
    s = bulkhead.statistics()
    return s.active, s.queued, s.available


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll until ``condition()`` holds (pytest-timeout ends a hang)."""
    while not condition():
        time.sleep(0.001)


def start(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_call_and_context_manager() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=2)
    assert bulkhead.call(lambda a, b: a + b, 1, 2) == 3
    with bulkhead:
        assert stats(bulkhead) == (1, 0, 1)
    with pytest.raises(ZeroDivisionError):
        bulkhead.call(lambda: 1 / 0)
    assert stats(bulkhead) == (0, 0, 2)


def test_sync_decorator() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1)

    @bulkhead
    def double(x: int) -> int:
        """Doc."""
        assert stats(bulkhead) == (1, 0, 0)
        return 2 * x

    assert double(4) == 8
    assert double.__name__ == "double"
    assert stats(bulkhead) == (0, 0, 1)


def test_full_queue_rejects_a_thread_at_once() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, max_queue=0)
    bulkhead.acquire_sync()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            bulkhead.acquire_sync()
        except sw.BulkheadFullError as exc:
            errors.append(exc)

    start(other).join()
    assert len(errors) == 1
    bulkhead.release()
    assert stats(bulkhead) == (0, 0, 1)


def test_queue_timeout_rejects_and_frees_the_queue_place() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=0.01)
    bulkhead.acquire_sync()
    with pytest.raises(sw.BulkheadFullError) as info:
        bulkhead.acquire_sync()
    assert info.value.queued == 0
    assert stats(bulkhead) == (1, 0, 0)
    bulkhead.release()


def test_passed_ambient_deadline_means_no_waiting() -> None:
    clock = FakeClock()
    bulkhead = sw.Bulkhead("b", max_concurrent=1)
    bulkhead.acquire_sync()
    with sw.deadline(1.0, clock=clock):
        clock.advance(2.0)
        with pytest.raises(sw.BulkheadFullError):
            bulkhead.call(lambda: None)
    bulkhead.release()
    assert stats(bulkhead) == (0, 0, 1)


def test_ambient_deadline_bounds_a_threads_wait() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=FOREVER)
    bulkhead.acquire_sync()
    with sw.deadline(0.01), pytest.raises(sw.BulkheadFullError):
        bulkhead.acquire_sync()
    bulkhead.release()
    assert stats(bulkhead) == (0, 0, 1)


def test_threads_are_admitted_in_arrival_order() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=None)
    admitted: list[int] = []
    bulkhead.acquire_sync()
    threads = []
    for i in range(10):

        def caller(i: int = i) -> None:
            with bulkhead:
                admitted.append(i)

        threads.append(start(caller))
        wait_until(lambda i=i: bulkhead.statistics().queued == i + 1)  # type: ignore[misc]
    bulkhead.release()
    for thread in threads:
        thread.join()
    assert admitted == list(range(10))
    assert stats(bulkhead) == (0, 0, 1)


def test_many_threads_never_exceed_the_limit() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=3, max_queue=100, queue_timeout=None)
    guard = threading.Lock()
    in_flight = 0
    peak = 0
    done = 0

    def work() -> None:
        nonlocal in_flight, peak
        with guard:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0)  # let other threads run while holding the slot
        with guard:
            in_flight -= 1

    def worker() -> None:
        nonlocal done
        for _ in range(50):
            bulkhead.call(work)
        with guard:
            done += 1

    threads = [start(worker) for _ in range(20)]
    for thread in threads:
        thread.join()
    assert done == 20
    assert 1 <= peak <= 3
    assert stats(bulkhead) == (0, 0, 3)


# -- one limit shared by threads and tasks ----------------------------------------------------------------------


async def test_a_thread_and_tasks_share_one_limit() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=None)
    held = threading.Event()
    release_it = threading.Event()

    def hold_in_thread() -> None:
        with bulkhead:
            held.set()
            release_it.wait()

    thread = start(hold_in_thread)
    await asyncio.to_thread(held.wait)
    assert stats(bulkhead) == (1, 0, 0)
    waiter = asyncio.create_task(bulkhead.run(asyncio.sleep, 0, "task ran"))
    await asyncio.sleep(0)
    assert stats(bulkhead) == (1, 1, 0)
    release_it.set()  # the thread's release hands the slot to the task, across threads
    assert await waiter == "task ran"
    await asyncio.to_thread(thread.join)
    assert stats(bulkhead) == (0, 0, 1)


async def test_a_task_release_wakes_a_waiting_thread() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=None)
    await bulkhead.acquire()
    result: list[str] = []
    thread = start(lambda: result.append(bulkhead.call(lambda: "thread ran")))
    await asyncio.to_thread(wait_until, lambda: bulkhead.statistics().queued == 1)
    bulkhead.release()
    await asyncio.to_thread(thread.join)
    assert result == ["thread ran"]
    assert stats(bulkhead) == (0, 0, 1)


async def test_a_task_cancelled_while_a_thread_hands_it_the_slot_passes_it_on() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=None)
    bulkhead.acquire_sync()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    assert stats(bulkhead) == (1, 1, 0)
    waiter.cancel()
    # Released from another thread: the hand-over reaches the loop through call_soon_threadsafe.
    await asyncio.to_thread(bulkhead.release)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert stats(bulkhead) == (0, 0, 1)


def test_a_waiter_on_a_closed_loop_is_skipped() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=None)
    bulkhead.acquire_sync()
    loop = asyncio.new_event_loop()
    task = loop.create_task(bulkhead.acquire())
    loop.run_until_complete(asyncio.sleep(0))
    assert stats(bulkhead) == (1, 1, 0)
    task.cancel()  # never runs: the loop is closed before its cancellation is delivered
    loop.close()
    bulkhead.release()  # cannot reach the waiter: the slot returns to the pool
    assert stats(bulkhead) == (0, 0, 1)
