"""The seed's payments API, done right: ``POST /payments`` on FastAPI behind :class:`IdempotencyMiddleware`.

This is the app of ``stalwart demo --scenario payments`` and of ``examples/payments_api.py`` (which serves it with
uvicorn). :func:`create_app` builds it; nothing is created at import time.

- ``POST /payments`` (``{"amount", "currency", "recipient"}``) answers 201 ``{"payment_id", "amount", "currency",
  "status"}`` and appends the charge to the app's ledger (the side effect: in a real service, the charge at the
  payment provider). The route requires an ``Idempotency-Key`` (``@idempotent(required=True)``).
- Authentication is deliberately simple: any non-empty bearer token names the user (no token: 401), so scoping can
  be seen: alice and bob using the same key get independent payments. :class:`BearerAuth` runs *before* the
  idempotency middleware and the resolver reads only the identity it verified.
- ``GET /stats`` (no authentication) reports the charges executed and the middleware's counters.

Stores (:func:`make_store`, chosen by ``STALWART_STORE``): ``sqlite`` (default, ``STALWART_SQLITE_PATH``,
default ``payments-idempotency.sqlite3``), ``redis`` (``REDIS_URL``, default ``redis://127.0.0.1:6379/0``) or
``postgres`` (``DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``). Redis and PostgreSQL need
the scope secret ``STALWART_IDEMPOTENCY_SECRET`` (at least 32 bytes, the same on every instance); SQLite keeps a
generated one in its file.
"""

from __future__ import annotations

import asyncio
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

__all__ = [
    "DATABASE_URL",
    "REDIS_URL",
    "STORE_KINDS",
    "BearerAuth",
    "Payment",
    "PaymentRequest",
    "create_app",
    "make_store",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

STORE_KINDS = ("sqlite", "redis", "postgres")
"""The values ``STALWART_STORE`` takes."""

REDIS_URL = "redis://127.0.0.1:6379/0"
"""The Redis server used when ``REDIS_URL`` is not set."""

DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The PostgreSQL database used when ``DATABASE_URL`` is not set."""

Idempotency = Annotated[IdempotencyState | None, Depends(idempotency_state)]
"""The request's idempotency state (key, fence, attempt, derived_key) as a FastAPI dependency."""


class PaymentRequest(BaseModel):
    """The body of ``POST /payments``."""

    amount: int = Field(gt=0, description="minor units, e.g. cents")
    currency: str = Field(min_length=3, max_length=3)
    recipient: str = Field(min_length=1)


class Payment(BaseModel):
    """The answer of ``POST /payments``: the charge made."""

    payment_id: str
    amount: int
    currency: str
    status: str


class BearerAuth:
    """Pure ASGI auth: ``Authorization: Bearer <name>`` names the user (a stand-in for real token checks).

    No token, or more than one ``Authorization`` line (ambiguous: RFC 9110 makes it a singleton field), is a 401.

    The verified name goes to ``scope["state"]["principal"]``, where :func:`~stalwart.idempotency.state_resolver`
    reads it. ``/stats``, ``/docs`` and ``/openapi.json`` need no token.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ("/stats", "/docs", "/openapi.json"):
            await self.app(scope, receive, send)
            return
        token = ""
        lines = [value for name, value in scope["headers"] if name == b"authorization"]
        # Authorization is a singleton field: several lines are ambiguous (which one did a proxy check?): 401.
        if len(lines) == 1 and lines[0][:7].lower() == b"bearer ":
            token = lines[0][7:].decode("latin-1").strip()
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


def make_store(kind: str | None = None) -> IdempotencyStore:
    """The store named by ``kind`` (default: ``STALWART_STORE``, else ``sqlite``), configured from the environment.

    Raises:
        ValueError: ``kind`` is not one of :data:`STORE_KINDS`.
        ImportError: the store's client library is missing (``pip install 'stalwart[redis]'`` or ``[postgres]``).
    """
    kind = kind or os.environ.get("STALWART_STORE") or "sqlite"
    if kind == "sqlite":
        return SQLiteStore(os.environ.get("STALWART_SQLITE_PATH", "payments-idempotency.sqlite3"))
    if kind == "redis":
        from stalwart.idempotency.stores.redis import RedisStore  # noqa: PLC0415 - needs redis-py

        return RedisStore.from_url(os.environ.get("REDIS_URL", REDIS_URL), prefix="payments")
    if kind == "postgres":
        from stalwart.idempotency.stores.postgres import PostgresStore  # noqa: PLC0415 - needs psycopg

        return PostgresStore.from_url(os.environ.get("DATABASE_URL", DATABASE_URL))
    raise ValueError(f"STALWART_STORE must be one of {', '.join(STORE_KINDS)}, not {kind!r}")


def create_app(
    *,
    store: IdempotencyStore | None = None,
    idempotency: bool = True,
    secret: bytes | str | None = None,
    charge_delay: float = 0.0,
    config: IdempotencyConfig | None = None,
    close_store: bool = True,
    l1_cache: int = 0,
) -> FastAPI:
    """Build the payments API.

    Args:
        store: the idempotency store (default: :func:`make_store`, from ``STALWART_STORE``).
        idempotency: install :class:`IdempotencyMiddleware` (default True); False serves the same API without it.
        secret: the scope secret (default: ``STALWART_IDEMPOTENCY_SECRET``; required for Redis and PostgreSQL).
        charge_delay: seconds each charge takes (the payment provider's latency; default 0).
        config: the middleware's settings (default: a 30 s lease, 24 h retention).
        close_store: close the store when the app's lifespan ends (default True).
        l1_cache: the middleware's in-process cache of completed records, entries (default 0: off).

    Raises:
        ValueError: the store needs a secret and none is given (raised here, at start-up, not on the first request:
            Starlette builds its middleware stack lazily).
    """
    ledger: list[Payment] = []  # the side effect: in a real service, the charge at the payment provider
    if store is None and idempotency:
        store = make_store()
    secret = secret or os.environ.get("STALWART_IDEMPOTENCY_SECRET") or None
    if idempotency and secret is None and getattr(store, "requires_secret", False):
        raise ValueError(
            f"secret is required with {type(store).__name__}: set STALWART_IDEMPOTENCY_SECRET "
            "(at least 32 bytes, the same on every instance)"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if store is not None and close_store:
            await store.aclose()

    app = FastAPI(title="payments (stalwart idempotency example)", lifespan=lifespan)

    @app.post("/payments", status_code=201)
    @idempotent(required=True)  # this route's settings, and the "endpoint started" marker
    async def create_payment(payment: PaymentRequest, state: Idempotency) -> Payment:
        # state.derived_key("psp") would be the idempotency key for the payment provider: the same on every attempt.
        if charge_delay:
            await asyncio.sleep(charge_delay)
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
        app.add_middleware(
            IdempotencyMiddleware,
            store=store,
            resolver=state_resolver(principal="principal", tenant=None),
            secret=secret,
            config=config or IdempotencyConfig(lease_ttl=30.0, retention=24 * 3600.0),
            l1_cache=l1_cache,
        )
    app.add_middleware(BearerAuth)  # added last = outermost: auth before idempotency
    return app


def _find(node: Any) -> IdempotencyMiddleware | None:
    while node is not None and not isinstance(node, IdempotencyMiddleware):
        node = getattr(node, "app", None)
    return node
