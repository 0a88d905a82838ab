"""``Bulkhead.try_acquire()``: take a free slot without waiting (the httpx transport's fast path)."""

from __future__ import annotations

import asyncio

import pytest

from stalwart import Bulkhead


def test_takes_free_slots_then_refuses_without_waiting() -> None:
    bulkhead = Bulkhead("b", max_concurrent=2, max_queue=5)
    assert bulkhead.try_acquire() is True
    assert bulkhead.try_acquire() is True
    assert bulkhead.try_acquire() is False  # full: no waiting, no queue place, no error
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.available) == (2, 0, 0)
    bulkhead.release()
    bulkhead.release()
    assert bulkhead.statistics().active == 0
    with pytest.raises(RuntimeError):
        bulkhead.release()  # a refused try_acquire holds nothing to release


async def test_queued_callers_come_first() -> None:
    bulkhead = Bulkhead("b", max_concurrent=1, max_queue=5, queue_timeout=None)
    assert bulkhead.try_acquire()
    waiter = asyncio.ensure_future(bulkhead.acquire())
    await asyncio.sleep(0)
    assert bulkhead.statistics().queued == 1
    bulkhead.release()  # handed to the waiter
    assert bulkhead.try_acquire() is False
    await waiter
    assert bulkhead.statistics().active == 1
    bulkhead.release()
    assert bulkhead.try_acquire() is True
    bulkhead.release()
    assert bulkhead.statistics().active == 0
