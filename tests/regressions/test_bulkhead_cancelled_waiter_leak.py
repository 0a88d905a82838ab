"""Regression: the seed's bulkhead leaked its queue counter when a waiting caller was cancelled, until the queue
looked permanently full and every caller was rejected."""

from __future__ import annotations

import asyncio

import stalwart as sw


async def test_cancelled_waiters_do_not_fill_the_queue_for_good() -> None:
    bulkhead = sw.Bulkhead("seed", max_concurrent=1, max_queue=2, queue_timeout=None)
    await bulkhead.acquire()
    for _ in range(5):  # each round fills the queue, then cancels both waiters
        waiters = [asyncio.create_task(bulkhead.acquire()) for _ in range(2)]
        await asyncio.sleep(0)
        assert bulkhead.statistics().queued == 2
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert bulkhead.statistics().queued == 0
    # The queue still has its two places and the slot is still handed over.
    late = [asyncio.create_task(bulkhead.run(asyncio.sleep, 0, i)) for i in range(2)]
    await asyncio.sleep(0)
    bulkhead.release()
    assert await asyncio.gather(*late) == [0, 1]
    assert bulkhead.statistics().available == 1
