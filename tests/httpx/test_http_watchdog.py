"""The async transport's watchdog: one loop timer, re-armed for the earliest attempt, cancelling only due tasks."""

from __future__ import annotations

import asyncio

from stalwart.httpx._watchdog import Watchdog


async def _sleeper(started: asyncio.Event) -> str:
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        return "cancelled"
    return "slept"


async def test_due_attempts_are_cancelled_and_the_timer_rearmed_for_the_next() -> None:
    loop = asyncio.get_running_loop()
    dog = Watchdog(loop)
    events = [asyncio.Event(), asyncio.Event()]
    soon = asyncio.create_task(_sleeper(events[0]))
    late = asyncio.create_task(_sleeper(events[1]))
    await asyncio.gather(events[0].wait(), events[1].wait())
    dog.watch(late, 3600.0)
    armed_for_late = dog.when
    dog.watch(soon, 0.0)
    assert dog.when < armed_for_late  # an earlier attempt moves the timer
    assert await soon == "cancelled"
    assert dog.end(soon) is True  # gone from the watch: the watchdog cancelled it
    assert dog.when == armed_for_late  # re-armed for the remaining attempt
    assert not late.done()
    assert dog.end(late) is False
    late.cancel()
    assert await late == "cancelled"


async def test_an_attempt_that_ended_is_not_cancelled() -> None:
    dog = Watchdog(asyncio.get_running_loop())
    started = asyncio.Event()
    task = asyncio.create_task(_sleeper(started))
    await started.wait()
    dog.watch(task, 0.0)
    assert dog.end(task) is False
    await asyncio.sleep(0.01)  # the timer fires and finds nothing due
    assert not task.done()
    assert dog.due == {}
    task.cancel()
    await task


async def test_a_later_attempt_does_not_move_the_timer() -> None:
    dog = Watchdog(asyncio.get_running_loop())
    started = asyncio.Event()
    task = asyncio.create_task(_sleeper(started))
    await started.wait()
    other = asyncio.create_task(_sleeper(asyncio.Event()))
    dog.watch(task, 100.0)
    first = dog.when
    dog.watch(other, 200.0)
    assert dog.when == first
    for t in (task, other):
        dog.end(t)
        t.cancel()
    await asyncio.gather(task, other, return_exceptions=True)
