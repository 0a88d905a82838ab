"""Bulkhead, async side: limits, the queue, timeouts, deadlines, cancellation, FIFO order, 1,000 tasks."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import timedelta

import pytest

import stalwart as sw
from stalwart.testing import FakeClock

FOREVER = 60.0


@pytest.fixture
def events() -> Iterator[list[sw.Event]]:
    seen: list[sw.Event] = []
    hook = seen.append  # one bound-method object: remove_hook compares by identity
    sw.add_hook(hook)
    yield seen
    sw.remove_hook(hook)


def stats(bulkhead: sw.Bulkhead) -> tuple[int, int, int]:
    s = bulkhead.statistics()
    return s.active, s.queued, s.available


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- construction -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_queue": -1}, "max_queue"),
        ({"queue_timeout": -1.0}, "queue_timeout"),
        ({"queue_timeout": math.nan}, "queue_timeout"),
    ],
)
def test_invalid_settings_are_value_errors(kwargs: dict[str, float], parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        sw.Bulkhead("b", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"max_queue": True}, "max_queue"),
        ({"queue_timeout": "1"}, "queue_timeout"),
    ],
)
def test_wrong_types_are_type_errors(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(TypeError, match=parameter):
        sw.Bulkhead("b", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        sw.Bulkhead(1)  # type: ignore[arg-type]


def test_defaults_and_statistics() -> None:
    bulkhead = sw.Bulkhead("payments")
    assert (bulkhead.name, bulkhead.max_concurrent, bulkhead.max_queue, bulkhead.queue_timeout) == (
        "payments",
        10,
        100,
        30.0,
    )
    assert bulkhead.statistics() == sw.BulkheadStatistics(
        name="payments", max_concurrent=10, max_queue=100, active=0, queued=0, available=10
    )
    assert "payments" in repr(bulkhead)


@pytest.mark.parametrize(("given", "expected"), [(None, None), (math.inf, None), (timedelta(seconds=2), 2.0)])
def test_queue_timeout_forms(given: float | timedelta | None, expected: float | None) -> None:
    assert sw.Bulkhead("b", queue_timeout=given).queue_timeout == expected


# -- limits and the queue ---------------------------------------------------------------------------------------


async def test_limit_queue_and_handover() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=2, max_queue=5)
    await bulkhead.acquire()
    await bulkhead.acquire()
    assert stats(bulkhead) == (2, 0, 0)
    waiter = asyncio.create_task(bulkhead.acquire())
    await settle()
    assert not waiter.done()
    assert stats(bulkhead) == (2, 1, 0)
    bulkhead.release()  # handed straight to the waiter
    await waiter
    assert stats(bulkhead) == (2, 0, 0)
    bulkhead.release()
    bulkhead.release()
    assert stats(bulkhead) == (0, 0, 2)


async def test_full_queue_is_rejected_at_once(events: list[sw.Event]) -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, max_queue=1)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await settle()
    with pytest.raises(sw.BulkheadFullError) as info:
        await bulkhead.acquire()
    assert isinstance(info.value, sw.Rejected)
    assert (info.value.name, info.value.max_concurrent, info.value.queued) == ("b", 1, 1)
    assert events == [sw.CallRejected("b", "bulkhead_full")]
    bulkhead.release()
    await waiter
    bulkhead.release()
    assert stats(bulkhead) == (0, 0, 1)


async def test_max_queue_zero_means_no_waiting() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, max_queue=0)
    async with bulkhead:
        with pytest.raises(sw.BulkheadFullError) as info:
            await bulkhead.run(asyncio.sleep, 0)
        assert info.value.queued == 0
    assert stats(bulkhead) == (0, 0, 1)


async def test_queue_timeout_rejects_and_frees_the_queue_place(events: list[sw.Event]) -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=0.01)
    await bulkhead.acquire()
    with pytest.raises(sw.BulkheadFullError):
        await bulkhead.acquire()
    assert stats(bulkhead) == (1, 0, 0)
    assert events == [sw.CallRejected("b", "bulkhead_full")]
    bulkhead.release()
    assert stats(bulkhead) == (0, 0, 1)


async def test_zero_queue_timeout_means_no_waiting() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=0)
    async with bulkhead:
        with pytest.raises(sw.BulkheadFullError):
            await bulkhead.acquire()
    assert stats(bulkhead) == (0, 0, 1)


async def test_passed_ambient_deadline_means_no_waiting() -> None:
    clock = FakeClock()
    bulkhead = sw.Bulkhead("b", max_concurrent=1)
    await bulkhead.acquire()
    with sw.deadline(1.0, clock=clock):
        clock.advance(1.0)
        with pytest.raises(sw.BulkheadFullError):
            await bulkhead.acquire()
    assert stats(bulkhead) == (1, 0, 0)
    bulkhead.release()


async def test_unenforced_ambient_deadline_bounds_the_wait() -> None:
    # A sync scope only sets the ambient deadline: the bulkhead's own wait stops there, as a rejection.
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=FOREVER)
    async with bulkhead:
        with sw.deadline(0.01), pytest.raises(sw.BulkheadFullError):
            await bulkhead.acquire()
        assert stats(bulkhead) == (1, 0, 0)


async def test_enforced_ambient_deadline_cancels_the_wait_as_its_own_error() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, queue_timeout=FOREVER)

    async def wait_in_scope() -> None:
        async with sw.deadline(0.01):
            await bulkhead.acquire()

    async with bulkhead:
        with pytest.raises(sw.DeadlineExceeded):
            await wait_in_scope()
        with pytest.raises(sw.DeadlineExceeded):
            await sw.Timeout(0.01).run(bulkhead.run, asyncio.sleep, 0)
        assert stats(bulkhead) == (1, 0, 0)
    assert stats(bulkhead) == (0, 0, 1)


async def test_waiters_are_admitted_in_arrival_order() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, max_queue=50)
    admitted: list[int] = []

    async def caller(i: int) -> None:
        async with bulkhead:
            admitted.append(i)
            await asyncio.sleep(0)

    await bulkhead.acquire()
    tasks = []
    for i in range(20):
        tasks.append(asyncio.create_task(caller(i)))
        await settle()  # each joins the queue before the next arrives
    assert stats(bulkhead) == (1, 20, 0)
    bulkhead.release()
    await asyncio.gather(*tasks)
    assert admitted == list(range(20))
    assert stats(bulkhead) == (0, 0, 1)


async def test_newcomers_do_not_overtake_the_queue() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await settle()
    bulkhead.release()  # the slot now belongs to the waiter, even before it runs
    assert stats(bulkhead) == (1, 0, 0)
    newcomer = asyncio.create_task(bulkhead.acquire())
    await settle()
    assert waiter.done()
    assert not newcomer.done()
    assert stats(bulkhead) == (1, 1, 0)
    bulkhead.release()
    await newcomer
    bulkhead.release()
    assert stats(bulkhead) == (0, 0, 1)


# -- cancellation -----------------------------------------------------------------------------------------------


async def test_cancelled_waiters_leave_the_queue() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, max_queue=10)
    await bulkhead.acquire()
    waiters = [asyncio.create_task(bulkhead.acquire()) for _ in range(10)]
    await settle()
    assert stats(bulkhead) == (1, 10, 0)
    for task in waiters:
        task.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert stats(bulkhead) == (1, 0, 0)
    bulkhead.release()
    assert stats(bulkhead) == (0, 0, 1)


async def test_cancelled_running_callers_release_their_slots() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=3)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(FOREVER)

    tasks = [asyncio.create_task(bulkhead.run(hang)) for _ in range(3)]
    await settle()
    assert stats(bulkhead) == (3, 0, 0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert stats(bulkhead) == (0, 0, 3)


@pytest.mark.parametrize("cancel_first", [False, True])
async def test_slot_handed_to_a_waiter_cancelled_at_the_same_moment_is_passed_on(cancel_first: bool) -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1)
    await bulkhead.acquire()
    first = asyncio.create_task(bulkhead.acquire())
    second = asyncio.create_task(bulkhead.run(asyncio.sleep, 0, "second ran"))
    await settle()
    assert stats(bulkhead) == (1, 2, 0)
    # In the same step, without yielding: the slot goes to `first`, and `first` is cancelled.
    if cancel_first:
        first.cancel()
        bulkhead.release()
    else:
        bulkhead.release()
        first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "second ran"
    assert stats(bulkhead) == (0, 0, 1)


async def test_slot_handed_to_the_last_waiter_cancelled_at_the_same_moment_returns_to_the_pool() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1)
    await bulkhead.acquire()
    only = asyncio.create_task(bulkhead.acquire())
    await settle()
    bulkhead.release()
    only.cancel()
    with pytest.raises(asyncio.CancelledError):
        await only
    assert stats(bulkhead) == (0, 0, 1)


async def test_a_thousand_tasks_never_exceed_the_limit() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=10, max_queue=1000, queue_timeout=None)
    in_flight = 0
    peak = 0

    async def work() -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        in_flight -= 1
        return 1

    results = await asyncio.gather(*(bulkhead.run(work) for _ in range(1000)))
    assert sum(results) == 1000
    assert peak == 10
    assert stats(bulkhead) == (0, 0, 10)


async def test_a_thousand_tasks_some_cancelled_leak_nothing() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=7, max_queue=1000, queue_timeout=None)
    in_flight = 0
    peak = 0

    @bulkhead
    async def work() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0)
        finally:
            in_flight -= 1

    tasks = [asyncio.create_task(work()) for _ in range(1000)]
    await asyncio.sleep(0)
    for task in tasks[::3]:
        task.cancel()
    await asyncio.sleep(0)
    for task in tasks[1::7]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(r, asyncio.CancelledError) for r in results)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    assert peak <= 7
    assert stats(bulkhead) == (0, 0, 7)


# -- the other entry points -------------------------------------------------------------------------------------


async def test_run_passes_arguments_and_releases_on_error() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1)

    async def add(a: int, *, b: int) -> int:
        return a + b

    async def boom() -> None:
        raise KeyError("boom")

    assert await bulkhead.run(add, 1, b=2) == 3
    with pytest.raises(KeyError):
        await bulkhead.run(boom)
    assert stats(bulkhead) == (0, 0, 1)


async def test_decorator_keeps_the_function_and_shares_the_limit() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=1, max_queue=0)

    @bulkhead
    async def hold(event: asyncio.Event) -> str:
        """Doc."""
        await event.wait()
        return "held"

    assert hold.__name__ == "hold"
    assert hold.__doc__ == "Doc."
    event = asyncio.Event()
    task = asyncio.create_task(hold(event))
    await settle()
    with pytest.raises(sw.BulkheadFullError):
        await hold(event)
    event.set()
    assert await task == "held"
    assert stats(bulkhead) == (0, 0, 1)


def test_over_release_is_an_error() -> None:
    bulkhead = sw.Bulkhead("b", max_concurrent=2)
    with pytest.raises(RuntimeError, match="released more often"):
        bulkhead.release()
