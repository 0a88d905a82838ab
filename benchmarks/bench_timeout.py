"""Timeouts: the cost of running a call that finishes in time under a 10-second limit.

Async rows: stalwart ``Timeout(10.0)`` as a decorator; ``asyncio.timeout(10.0)`` around the await (the peer the
target is set against); stalwart's ``deadline(10.0)`` scope; ``asyncio.wait_for`` and hyx ``timeout`` for scale
(both run the call in a new task). Sync rows: stalwart ``Timeout(10.0)`` (sets the ambient deadline; sync code cannot
be pre-empted) and the ``deadline(10.0)`` scope.
"""

from __future__ import annotations

import asyncio
from typing import Any

from _common import BARE_ASYNC, BARE_SYNC, afn, fn, stalwart_name
from _harness import Case
from hyx.timeout import timeout as hyx_timeout

GROUP = "timeout"

STALWART_ASYNC = "stalwart Timeout (async)"
ASYNCIO_TIMEOUT = "asyncio.timeout (async)"
STALWART_DEADLINE_ASYNC = "stalwart deadline() scope (async)"
WAIT_FOR = "asyncio.wait_for (async)"
HYX_TIMEOUT = "hyx timeout (async)"
STALWART_SYNC = "stalwart Timeout (sync)"
STALWART_DEADLINE_SYNC = "stalwart deadline() scope (sync)"

SECONDS = 10.0


def _stalwart(target: Any) -> Any:
    return stalwart_name("Timeout")(SECONDS)(target)


def _asyncio_timeout() -> Any:
    timeout = asyncio.timeout

    async def case() -> int:
        async with timeout(SECONDS):
            return await afn()

    return case


def _wait_for() -> Any:
    wait_for = asyncio.wait_for

    async def case() -> int:
        return await wait_for(afn(), SECONDS)

    return case


async def _hyx() -> Any:
    # hyx's TimeoutManager reads the running loop at decoration time, so this factory runs inside the loop.

    return hyx_timeout(SECONDS)(afn)


def _deadline_async() -> Any:
    deadline = stalwart_name("deadline")

    async def case() -> int:
        async with deadline(SECONDS):
            return await afn()

    return case


def _deadline_sync() -> Any:
    deadline = stalwart_name("deadline")

    def case() -> int:
        with deadline(SECONDS):
            return fn()

    return case


def cases() -> list[Case]:
    """Every row of this module."""
    return [
        Case(GROUP, STALWART_ASYNC, "async", lambda: _stalwart(afn), baseline=BARE_ASYNC, stalwart=True),
        Case(GROUP, ASYNCIO_TIMEOUT, "async", _asyncio_timeout, baseline=BARE_ASYNC),
        Case(GROUP, STALWART_DEADLINE_ASYNC, "async", _deadline_async, baseline=BARE_ASYNC, stalwart=True),
        Case(GROUP, WAIT_FOR, "async", _wait_for, baseline=BARE_ASYNC),
        Case(GROUP, HYX_TIMEOUT, "async", _hyx, baseline=BARE_ASYNC),
        Case(GROUP, STALWART_SYNC, "sync", lambda: _stalwart(fn), baseline=BARE_SYNC, stalwart=True),
        Case(GROUP, STALWART_DEADLINE_SYNC, "sync", _deadline_sync, baseline=BARE_SYNC, stalwart=True),
    ]
