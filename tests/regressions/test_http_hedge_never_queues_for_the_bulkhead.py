"""Regression: a hedge queued in the bulkhead behind its own primary.

With ``max_concurrent=1`` the hedge, due after its delay, drew a retry-budget token, emitted ``HedgeStarted`` and
then waited for the slot its own primary held (``active=1, queued=1``), sending nothing; when the primary then
failed with a 503, the queued hedge went out at once: a retry without backoff. A full bulkhead also lost a queue
place to it. A hedge is opportunistic: with no free slot at the moment it is due, none starts and no token is drawn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from stalwart import Backoff, HedgeStarted, add_hook, remove_hook
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"
ORIGIN = "http:https://api.example.com:443"


class SpyBudget:
    name = "spy"

    def __init__(self) -> None:
        self.asked = 0

    def record_success(self, first: bool) -> None:
        pass

    def record_failure(self, first: bool) -> None:
        pass

    def try_acquire_retry(self) -> bool:
        self.asked += 1
        return True


class Primary(httpx.AsyncBaseTransport):
    """Attempt 1 answers when ``release`` is set; a hedge answers at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.attempts: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        number = int(request.headers["stalwart-attempt"])
        self.attempts.append(number)
        if number == 1:
            self.entered.set()
            await self.release.wait()
        return httpx.Response(200, text=f"attempt {number}")


async def _race(max_concurrent: int) -> tuple[str, Primary, SpyBudget, list[Any], tuple[int, int]]:
    inner, budget, events = Primary(), SpyBudget(), []
    registry = Registry()
    config = ResilienceConfig(
        backoff=Backoff.constant(0.0), hedge=0.1, max_concurrent=max_concurrent, budget=budget, timeout=None
    )
    transport = AsyncResilientTransport(inner, config=config, registry=registry, clock=FakeClock())
    add_hook(events.append)
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            task = asyncio.create_task(client.get(URL))
            await inner.entered.wait()
            for _ in range(20):  # the hedge delay passes (fake clock) and the race reacts
                await asyncio.sleep(0)
            stats = registry.get_bulkhead(ORIGIN).statistics()
            during = (stats.active, stats.queued)
            inner.release.set()
            text = (await task).text
    finally:
        remove_hook(events.append)
    return text, inner, budget, [e for e in events if isinstance(e, HedgeStarted)], during


async def test_no_free_slot_no_hedge() -> None:
    text, inner, budget, hedges, during = await _race(max_concurrent=1)
    assert during == (1, 0)  # nothing queued behind the primary
    assert text == "attempt 1"
    assert inner.attempts == [1]
    assert hedges == []
    assert budget.asked == 0  # no token drawn for a hedge that could not start


async def test_a_free_slot_still_hedges() -> None:
    text, inner, budget, hedges, _ = await _race(max_concurrent=2)
    assert text == "attempt 2"  # the hedge answered while the primary waited
    assert inner.attempts == [1, 2]
    assert len(hedges) == 1
    assert budget.asked == 1
