"""Regression: with a ``FakeClock``, the idempotency middleware's periodic purge raced the fake time forward.

The purge runs from a background task started at lifespan start-up, sleeping on the middleware's clock between runs.
``FakeClock.asleep`` advances time at once (that is what makes retries instant in tests), so the task moved the clock
forward by ``purge_interval`` (60 s) at every turn of the event loop: in a user's test, leases and retention lapsed
while nothing happened. With a clock whose sleeps advance time, the middleware purges from requests instead (as
without a lifespan), on the same clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stalwart.idempotency import IdempotencyMiddleware, Identity, MemoryStore
from stalwart.testing import FakeClock


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def test_lifespan_with_a_fake_clock_leaves_time_alone() -> None:
    clock = FakeClock()
    mw = IdempotencyMiddleware(
        _app, store=MemoryStore(clock=clock), resolver=lambda s: Identity("u"), secret=b"s" * 32, clock=clock
    )
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message)

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(mw({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send))
    for _ in range(200):  # the application's life: many turns of the event loop
        await asyncio.sleep(0)
    assert outbox[0]["type"] == "lifespan.startup.complete"
    assert clock.monotonic() == 0.0
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    assert outbox[-1]["type"] == "lifespan.shutdown.complete"
    assert clock.monotonic() == 0.0
