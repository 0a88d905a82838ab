"""The lean first attempt hands its watch over to the general loop together with the watchdog that holds it.

One ``AsyncResilientTransport`` used from two event loops (two threads, each with its own client) keeps one watchdog
attribute, replaced by whichever loop last needed a new one. The lean path registered its attempt with its loop's
watchdog; the general loop, settling that attempt after a retryable answer, read the attribute again. When another
loop had replaced it meanwhile, the attempt was looked up in the wrong watchdog, not found, and taken for one the
watchdog had cancelled: the task was uncancelled (a cancellation it never had, or a real one withdrawn) and its entry
stayed behind in the first watchdog, which would later cancel the task at a random point.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from stalwart import Backoff
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.httpx._watchdog import Watchdog


class SwapsTheWatchdog(httpx.AsyncBaseTransport):
    """Answers 503 then 200; during the first attempt another loop's watchdog replaces the transport's."""

    def __init__(self) -> None:
        self.outer: AsyncResilientTransport | None = None
        self.calls = 0
        self.first_watchdog: Watchdog | None = None
        self.other_loop = asyncio.new_event_loop()  # stands for another thread's loop; never run

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 1:
            assert self.outer is not None
            self.first_watchdog = self.outer._watchdog
            self.outer._watchdog = Watchdog(self.other_loop)  # what another thread's first request does
            return httpx.Response(503)
        return httpx.Response(200)


async def _run() -> tuple[int, int, SwapsTheWatchdog, asyncio.Task[Any]]:
    inner = SwapsTheWatchdog()
    config = ResilienceConfig(backoff=Backoff.constant(0.0), use_breaker=False, use_bulkhead=False, budget=None)
    transport = AsyncResilientTransport(inner, config=config)
    inner.outer = transport
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("http://warm.test/")  # creates this loop's watchdog: the next request takes the lean path
        inner.calls = 0
        response = await client.get("http://svc.test/")
        task = asyncio.current_task()
        assert task is not None
        return response.status_code, task.cancelling(), inner, task


def test_handoff_settles_the_watch_in_the_watchdog_that_holds_it() -> None:
    status, cancelling, inner, task = asyncio.run(_run())
    inner.other_loop.close()
    assert status == 200
    assert inner.calls == 2
    assert cancelling == 0  # no cancellation requested, none withdrawn
    assert inner.first_watchdog is not None
    assert task not in inner.first_watchdog.due  # the lean attempt's entry was removed from its own watchdog
