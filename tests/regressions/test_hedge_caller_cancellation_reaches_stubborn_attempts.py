"""Every cancellation of the caller reaches the attempts a hedged call is still waiting for.

When a hedged race ends (a winner, or the caller cancelled) the attempts still running are cancelled and awaited.
An attempt that swallows that cancellation and keeps waiting (an inner transport's clean-up that blocks, a driver
that catches ``CancelledError``) kept the caller waiting too: a further ``Task.cancel()`` of the caller (or an
enclosing ``asyncio.timeout``) was noted and not passed on, so the transport's hedged race hung until the attempt
ended by itself. ``Hedge`` passed it on; the transport now does too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from stalwart import Hedge
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.testing import FakeClock


async def turns(n: int = 30) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class Stubborn:
    """Attempt 1 swallows its first cancellation and keeps waiting; attempt 2 answers at once."""

    def __init__(self) -> None:
        self.started = 0
        self.cancellations = 0

    async def attempt(self) -> str:
        self.started += 1
        if self.started == 2:
            return "two"
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancellations += 1
                if self.cancellations >= 2:
                    raise


class StubbornTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.stubborn = Stubborn()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=(await self.stubborn.attempt()).encode())


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def cancel_twice(task: asyncio.Task[Any], stubborn: Stubborn) -> None:
    await turns()
    assert stubborn.started == 2  # the hedge won; the primary is being cancelled and swallowed it
    assert stubborn.cancellations == 1
    assert not task.done()
    task.cancel()  # the caller gives up waiting: this cancellation must reach the primary
    await turns()
    assert stubborn.cancellations == 2
    assert task.done()
    assert task.cancelled()
    assert not others()


async def test_http_hedge_passes_the_callers_cancellation_to_a_stubborn_loser() -> None:
    inner = StubbornTransport()
    config = ResilienceConfig(hedge=Hedge(0.0))
    transport = AsyncResilientTransport(inner, config=config, registry=Registry(), clock=FakeClock())
    async with httpx.AsyncClient(transport=transport) as client:
        task = asyncio.ensure_future(client.get("https://api.example.com/items"))
        await cancel_twice(task, inner.stubborn)


async def test_hedge_passes_the_callers_cancellation_to_a_stubborn_loser() -> None:
    stubborn = Stubborn()
    task = asyncio.ensure_future(Hedge(0.0, clock=FakeClock()).run(stubborn.attempt))
    await cancel_twice(task, stubborn)
