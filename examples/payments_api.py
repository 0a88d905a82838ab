"""The seed's idempotent payments API, done right: ``POST /payments`` behind stalwart's IdempotencyMiddleware.

Run it::

    uvicorn --app-dir examples payments_api:app                       # SQLite (the embedded default)
    STALWART_STORE=redis uvicorn --app-dir examples payments_api:app  # or redis / postgres (REDIS_URL, DATABASE_URL)

and pay twice with the same key; the second answer is the first one replayed (``Idempotent-Replayed: true``)::

    curl -i -X POST localhost:8000/payments -H 'Authorization: Bearer alice' -H 'Idempotency-Key: order-42' \\
         -H 'Content-Type: application/json' -d '{"amount": 1250, "currency": "EUR", "recipient": "bob"}'

Authentication is deliberately simple: any non-empty bearer token names the user (no token: 401), so scoping can be
seen: alice and bob using the same key get independent payments. The auth middleware runs *before* the idempotency
middleware and the resolver reads only the identity it verified.

Environment:
    STALWART_STORE: ``sqlite`` (default), ``redis`` or ``postgres``.
    STALWART_SQLITE_PATH: the SQLite file (default ``payments-idempotency.sqlite3``).
    REDIS_URL, DATABASE_URL: the servers (defaults ``redis://127.0.0.1:6379/0``,
        ``postgresql://postgres@127.0.0.1:5432/test``).
    STALWART_IDEMPOTENCY_SECRET: the scope secret shared by every instance (at least 32 bytes); required for Redis
        and PostgreSQL, optional for SQLite (which keeps a generated one in its file).
    STALWART_IDEMPOTENCY: ``off`` runs the same API without the middleware (to see the double charges).

``GET /stats`` reports the charges executed and the middleware's counters.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field

from stalwart.idempotency import (
    IdempotencyConfig,
    IdempotencyMiddleware,
    IdempotencyState,
    IdempotencyStore,
    SQLiteStore,
    idempotency_state,
    idempotent,
    state_resolver,
)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


Idempotency = Annotated[IdempotencyState | None, Depends(idempotency_state)]
"""The request's idempotency state (key, fence, attempt, derived_key) as a FastAPI dependency."""


class PaymentRequest(BaseModel):
    amount: int = Field(gt=0, description="minor units, e.g. cents")
    currency: str = Field(min_length=3, max_length=3)
    recipient: str = Field(min_length=1)


class Payment(BaseModel):
    payment_id: str
    amount: int
    currency: str
    status: str


class BearerAuth:
    """Pure ASGI auth: ``Authorization: Bearer <name>`` names the user (a stand-in for real token checks)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ("/stats", "/docs", "/openapi.json"):
            await self.app(scope, receive, send)
            return
        token = ""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].decode("latin-1").strip()
        if not token:
            body = b'{"detail":"a bearer token is required"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["principal"] = token  # verified (trivially) by this layer
        await self.app(scope, receive, send)


def make_store(kind: str) -> IdempotencyStore:
    """The store named by ``STALWART_STORE``."""
    if kind == "sqlite":
        return SQLiteStore(os.environ.get("STALWART_SQLITE_PATH", "payments-idempotency.sqlite3"))
    if kind == "redis":
        from stalwart.idempotency.stores.redis import RedisStore  # noqa: PLC0415 - needs redis-py

        return RedisStore.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), prefix="payments")
    if kind == "postgres":
        from stalwart.idempotency.stores.postgres import PostgresStore  # noqa: PLC0415 - needs psycopg

        return PostgresStore.from_url(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    raise SystemExit(f"STALWART_STORE must be sqlite, redis or postgres, not {kind!r}")


def create_app(
    *, store: IdempotencyStore | None = None, idempotency: bool = True, secret: bytes | str | None = None
) -> FastAPI:
    """Build the payments API. ``store`` defaults to the one ``STALWART_STORE`` names."""
    ledger: list[Payment] = []  # the side effect: in a real service, the charge at the payment provider
    if store is None and idempotency:
        store = make_store(os.environ.get("STALWART_STORE", "sqlite"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if store is not None:
            await store.aclose()

    app = FastAPI(title="payments (stalwart idempotency example)", lifespan=lifespan)

    @app.post("/payments", status_code=201)
    @idempotent(required=True)  # this route's settings, and the "endpoint started" marker
    async def create_payment(payment: PaymentRequest, state: Idempotency) -> Payment:
        # state.derived_key("psp") would be the idempotency key for the payment provider: the same on every attempt.
        charged = Payment(
            payment_id=f"pay_{uuid.uuid4().hex[:16]}",
            amount=payment.amount,
            currency=payment.currency.upper(),
            status="succeeded",
        )
        ledger.append(charged)
        return charged

    @app.get("/stats")
    async def stats(request: Request) -> dict[str, Any]:
        middleware = _find(request.app.middleware_stack)
        return {
            "charges": len(ledger),
            "idempotency": None if middleware is None else middleware.statistics(),
        }

    if idempotency:
        assert store is not None
        secret = secret or os.environ.get("STALWART_IDEMPOTENCY_SECRET") or None
        app.add_middleware(
            IdempotencyMiddleware,
            store=store,
            resolver=state_resolver(principal="principal", tenant=None),
            secret=secret,
            config=IdempotencyConfig(lease_ttl=30.0, retention=24 * 3600.0),
        )
    app.add_middleware(BearerAuth)  # added last = outermost: authentication runs before idempotency
    return app


def _find(node: Any) -> IdempotencyMiddleware | None:
    while node is not None and not isinstance(node, IdempotencyMiddleware):
        node = getattr(node, "app", None)
    return node


app = create_app(idempotency=os.environ.get("STALWART_IDEMPOTENCY", "on") != "off")
