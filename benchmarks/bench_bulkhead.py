"""Bulkheads: the cost of a call admitted at once by a bulkhead with free slots.

Async rows: stalwart ``Bulkhead(name, max_concurrent=10)`` as a decorator; a bare ``asyncio.Semaphore(10)``
acquire/release around the await (the peer the target is set against); hyx ``bulkhead(10, 110)`` for scale.
Sync rows: stalwart's sync bulkhead and a bare ``threading.BoundedSemaphore(10)``.
"""

from __future__ import annotations

import asyncio
import threading
from itertools import count
from typing import Any

from _common import BARE_ASYNC, BARE_SYNC, afn, fn, stalwart_name
from _harness import Case
from hyx.bulkhead import bulkhead as hyx_bulkhead

GROUP = "bulkhead"

STALWART_ASYNC = "stalwart Bulkhead (async)"
SEMAPHORE_ASYNC = "asyncio.Semaphore (async)"
HYX_BULKHEAD = "hyx bulkhead (async)"
STALWART_SYNC = "stalwart Bulkhead (sync)"
SEMAPHORE_SYNC = "threading.BoundedSemaphore (sync)"

_ids = count()


def _stalwart(target: Any) -> Any:
    bulkhead = stalwart_name("Bulkhead")
    return bulkhead(f"bench-bulkhead-{next(_ids)}", max_concurrent=10)(target)


def _semaphore_async() -> Any:
    semaphore = asyncio.Semaphore(10)

    async def case() -> int:
        async with semaphore:
            return await afn()

    return case


def _semaphore_sync() -> Any:
    semaphore = threading.BoundedSemaphore(10)

    def case() -> int:
        with semaphore:
            return fn()

    return case


def _hyx() -> Any:

    return hyx_bulkhead(max_concurrency=10, max_capacity=110)(afn)


def cases() -> list[Case]:
    """Every row of this module."""
    return [
        Case(GROUP, STALWART_ASYNC, "async", lambda: _stalwart(afn), baseline=BARE_ASYNC, stalwart=True),
        Case(GROUP, SEMAPHORE_ASYNC, "async", _semaphore_async, baseline=BARE_ASYNC),
        Case(GROUP, HYX_BULKHEAD, "async", _hyx, baseline=BARE_ASYNC),
        Case(GROUP, STALWART_SYNC, "sync", lambda: _stalwart(fn), baseline=BARE_SYNC, stalwart=True),
        Case(GROUP, SEMAPHORE_SYNC, "sync", _semaphore_sync, baseline=BARE_SYNC),
    ]
