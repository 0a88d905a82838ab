"""Regression: the lease heartbeat kept running after the outcome was settled, until the application returned.

Starlette and FastAPI run ``BackgroundTasks`` after the response is sent, inside the same ASGI call, and those often
outlast ``heartbeat_every`` (10 s by default: sending e-mails, webhooks). Every such request then renewed a lease it
no longer held: the heartbeat hit a COMPLETED (or released) record, was refused, and logged a WARNING "heartbeat
refused (lease lost …)" although nothing was lost; and when the completion write had failed, the heartbeat kept the
record IN_PROGRESS for as long as the background work ran, so retries got 409s instead of the record lapsing into
ABANDONED as spec §2.8 step 9 says. This is the Starlette background-task interaction of Kludex/starlette #1438
(work that outlives the response). The heartbeat now stops as soon as the outcome is settled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from _idem_asgi import FaultyStore, post, wrap

from stalwart.idempotency import IdempotencyConfig, State


class TickClock:
    """Monotonic time stands still; a heartbeat-sized sleep ends when the test calls :meth:`tick`."""

    def __init__(self) -> None:
        self._tick = asyncio.Event()

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        raise AssertionError("no blocking sleeps")

    async def asleep(self, seconds: float) -> None:
        if seconds >= 1.0:
            await self._tick.wait()
        await asyncio.sleep(0)

    async def tick(self) -> None:
        for _ in range(5):  # let a freshly started heartbeat reach its sleep
            await asyncio.sleep(0)
        due, self._tick = self._tick, asyncio.Event()
        due.set()  # wakes the sleepers of this period once; the next period needs another tick
        for _ in range(5):
            await asyncio.sleep(0)


def counting_store(*, fail_complete: bool = False) -> FaultyStore:
    """Records each heartbeat's result in ``results["heartbeat"]``; ``complete`` fails with ``fail_complete``."""
    return FaultyStore(fail_at={"complete"} if fail_complete else ())


async def run_with_background_work(store: FaultyStore, status: int = 201) -> tuple[list[dict[str, Any]], Any]:
    clock = TickClock()
    response_sent = asyncio.Event()
    background_done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await clock.tick()  # a heartbeat while the handler works: renewed
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        response_sent.set()
        await background_done.wait()  # a background task after the response

    mw = wrap(app, store, clock=clock, config=IdempotencyConfig(completion_attempts=1))
    messages: list[dict[str, Any]] = []
    task = asyncio.create_task(post(mw, sink=messages))
    await response_sent.wait()
    for _ in range(3):
        await clock.tick()  # background work outlasting several heartbeat periods
    background_done.set()
    await task
    return messages, mw


async def test_no_heartbeat_after_the_completion(caplog: pytest.LogCaptureFixture) -> None:
    store = counting_store()
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        await run_with_background_work(store)
    assert store.results["heartbeat"] == [True]  # only the one while the handler ran
    assert "heartbeat refused" not in caplog.text
    (record,) = store._records.values()
    assert record.state is State.COMPLETED


async def test_no_heartbeat_after_a_release(caplog: pytest.LogCaptureFixture) -> None:
    store = counting_store()
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        await run_with_background_work(store, status=429)
    assert store.results["heartbeat"] == [True]
    assert "heartbeat refused" not in caplog.text
    assert len(store) == 0


async def test_a_failed_completion_is_left_to_lapse_not_kept_alive_by_background_work() -> None:
    store = counting_store(fail_complete=True)
    _, mw = await run_with_background_work(store)
    assert store.results["heartbeat"] == [True]
    assert mw.statistics()["completion_write_failures"] == 1
