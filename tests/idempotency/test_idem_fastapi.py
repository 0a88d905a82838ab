"""IdempotencyMiddleware under FastAPI: the dependency, the @idempotent marker and per-route settings."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from idem_apps import SECRET, header_resolver
from pydantic import BaseModel

from stalwart.idempotency import (
    IdempotencyMiddleware,
    IdempotencyState,
    MemoryStore,
    current_idempotency,
    derived_key,
    idempotency_state,
    idempotent,
)

State = Annotated[IdempotencyState | None, Depends(idempotency_state)]


class Payment(BaseModel):
    amount: int
    currency: str


def build(**mw: Any) -> tuple[FastAPI, dict[str, Any]]:
    app = FastAPI()
    seen: dict[str, Any] = {"runs": 0, "states": [], "derived": []}

    @app.post("/payments", status_code=201)
    @idempotent(required=True)
    async def pay(payment: Payment, state: State) -> dict[str, Any]:
        seen["runs"] += 1
        seen["states"].append(state)
        assert state is current_idempotency()
        if state is not None:
            seen["derived"].append(state.derived_key("psp"))
        return {"amount": payment.amount, "run": seen["runs"]}

    @app.post("/plain", status_code=201)
    async def plain(payment: Payment) -> dict[str, Any]:
        seen["runs"] += 1
        return {"run": seen["runs"]}

    @app.post("/sync", status_code=201)
    @idempotent()
    def sync_pay(payment: Payment) -> dict[str, Any]:
        seen["runs"] += 1
        state = current_idempotency()
        return {"started": state is not None and state.started}

    @app.put("/put-too")
    @idempotent(methods=frozenset({"PUT"}))
    async def put(payment: Payment) -> dict[str, Any]:
        seen["runs"] += 1
        return {"run": seen["runs"]}

    @app.post("/off")
    @idempotent(enabled=False)
    async def off() -> dict[str, Any]:
        seen["runs"] += 1
        return {"run": seen["runs"]}

    app.add_middleware(IdempotencyMiddleware, store=MemoryStore(), resolver=header_resolver, secret=SECRET, **mw)
    return app, seen


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


H = {"idempotency-key": "k-1", "x-user": "alice"}
GOOD = {"amount": 10, "currency": "EUR"}


async def test_dependency_exposes_the_state_and_replays_skip_the_handler() -> None:
    app, seen = build()
    async with client(app) as c:
        first = await c.post("/payments", json=GOOD, headers=H)
        second = await c.post("/payments", json=GOOD, headers=H)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert seen["runs"] == 1
    (state,) = seen["states"]
    assert (state.key, state.fence, state.attempt, state.replayed, state.started) == ("k-1", 1, 1, False, True)
    assert seen["derived"] == [derived_key(SECRET, state.record_id, "psp")]


async def test_decorated_route_settings_apply() -> None:
    app, seen = build()
    async with client(app) as c:
        missing = await c.post("/payments", json=GOOD, headers={"x-user": "alice"})
        assert missing.status_code == 400  # required=True on this route only
        assert (await c.post("/plain", json=GOOD, headers={"x-user": "alice"})).status_code == 201
        for _ in range(2):
            assert (await c.put("/put-too", json=GOOD, headers=H)).status_code == 200
        for _ in range(2):
            assert (await c.post("/off", headers=H)).status_code == 200
    assert seen["runs"] == 1 + 1 + 2  # plain, one PUT execution, two unprotected runs


async def test_request_validation_failure_releases_the_key() -> None:
    app, seen = build()
    async with client(app) as c:
        invalid = await c.post("/payments", json={"amount": "lots"}, headers=H)
        assert invalid.status_code == 422  # FastAPI's validation: the endpoint never started
        again = await c.post("/payments", json={"amount": "lots"}, headers=H)
        assert "idempotent-replayed" not in again.headers
        fixed = await c.post("/payments", json=GOOD, headers=H)
    assert fixed.status_code == 201
    assert seen["runs"] == 1


async def test_without_the_marker_a_validation_error_is_stored() -> None:
    app, seen = build()
    async with client(app) as c:
        await c.post("/plain", json={"amount": "lots"}, headers=H)
        again = await c.post("/plain", json={"amount": "lots"}, headers=H)
    assert again.status_code == 422
    assert again.headers["idempotent-replayed"] == "true"
    assert seen["runs"] == 0


async def test_sync_endpoints_get_the_marker_through_the_threadpool() -> None:
    app, _ = build()
    async with client(app) as c:
        r = await c.post("/sync", json=GOOD, headers=H)
    assert r.json() == {"started": True}


async def test_unknown_routes_and_wrong_methods_are_released() -> None:
    app, _ = build()
    async with client(app) as c:
        assert (await c.post("/nowhere", json=GOOD, headers=H)).status_code == 404
        r = await c.post("/nowhere", json=GOOD, headers=H)
        assert r.status_code == 404
        assert "idempotent-replayed" not in r.headers
        assert (await c.patch("/plain", json=GOOD, headers=H)).status_code == 405
        r = await c.patch("/plain", json=GOOD, headers=H)
        assert "idempotent-replayed" not in r.headers
