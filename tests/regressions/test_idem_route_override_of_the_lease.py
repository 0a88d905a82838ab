"""Regression: ``@idempotent(lease_ttl=...)`` kept the app-wide heartbeat period computed from the app-wide lease.

``IdempotencyConfig`` turns the default ``heartbeat_every=None`` into ``lease_ttl / 3`` (10 s for the default 30 s
lease), and the per-route overrides of :func:`idempotent` were applied with ``dataclasses.replace`` on that
normalised config. So ``@idempotent(lease_ttl=3.0)`` carried ``heartbeat_every=10.0`` along, failed the check
``heartbeat_every < lease_ttl`` on the first request, and the route answered 500 to every request; a longer lease
(``lease_ttl=300``) silently kept renewing every 10 s. Powertools had the same shape of bug: a setting applied in one
place and silently not in the derived one (aws-powertools/powertools-lambda-python #4759, ``in_progress_expiration``
not set). A route that overrides the lease without its own heartbeat now gets ``lease_ttl / 3`` again; an explicit
app-wide heartbeat is kept.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, Identity, MemoryStore, idempotent


class RecordingClock:
    """Records every sleep; heartbeat-sized ones wait until cancelled."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        raise AssertionError("no blocking sleeps")

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.Event().wait()


async def heartbeat_period(config: IdempotencyConfig | None, **overrides: Any) -> tuple[int, float]:
    runs = []

    @idempotent(**overrides)
    async def pay(request: Request) -> PlainTextResponse:
        runs.append(1)
        await asyncio.sleep(0)  # let the heartbeat task start its first sleep
        return PlainTextResponse("paid", status_code=201)

    app = Starlette(routes=[Route("/payments", pay, methods=["POST"])])
    clock = RecordingClock()
    app.add_middleware(
        IdempotencyMiddleware,
        store=MemoryStore(),
        resolver=lambda scope: Identity("alice"),
        secret=b"s" * 32,
        config=config,
        clock=clock,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        first = await c.post("/payments", headers={"idempotency-key": "k-1"})
        replay = await c.post("/payments", headers={"idempotency-key": "k-1"})
    assert replay.headers.get("idempotent-replayed") == "true"
    assert len(runs) == 1
    (period,) = clock.sleeps
    return first.status_code, period


@pytest.mark.parametrize(("lease", "expected"), [(3.0, 1.0), (300.0, 100.0)])
async def test_a_route_lease_override_gets_its_own_default_heartbeat(lease: float, expected: float) -> None:
    assert await heartbeat_period(None, lease_ttl=lease) == (201, expected)


async def test_an_explicit_app_wide_heartbeat_is_kept() -> None:
    config = IdempotencyConfig(lease_ttl=60.0, heartbeat_every=5.0)
    assert await heartbeat_period(config, lease_ttl=120.0) == (201, 5.0)


async def test_a_route_heartbeat_override_is_used() -> None:
    assert await heartbeat_period(None, lease_ttl=3.0, heartbeat_every=2.0) == (201, 2.0)


async def test_without_overrides_the_app_wide_settings_apply() -> None:
    assert await heartbeat_period(IdempotencyConfig(lease_ttl=90.0)) == (201, 30.0)
