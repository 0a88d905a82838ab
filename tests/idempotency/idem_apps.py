"""Starlette test apps and helpers for the middleware tests.

The resolver reads ``x-user`` / ``x-tenant`` headers: in these tests they stand in for an identity an auth layer has
verified (the payments example shows a real auth middleware in front).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, IdempotencyStore, Identity, MemoryStore

SECRET = b"k" * 32


def header_resolver(scope: MutableMapping[str, Any]) -> Identity | None:
    headers = dict(scope["headers"])
    user = headers.get(b"x-user")
    if not user:
        return None
    return Identity(user.decode(), headers.get(b"x-tenant", b"default").decode())


Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Probe:
    """Counts handler runs and lets a test hold a handler until it says go."""

    calls: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None
    seen_states: list[Any] = field(default_factory=list)

    def hold(self) -> None:
        self.gate = asyncio.Event()

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()


def make_app(probe: Probe, handler: Handler | None = None, extra_routes: list[Route] | None = None) -> Starlette:
    async def payments(request: Request) -> Response:
        probe.calls += 1
        n = probe.calls
        probe.seen_states.append(getattr(request.state, "idempotency", None))
        probe.started.set()
        if probe.gate is not None:
            await probe.gate.wait()
        if handler is not None:
            return await handler(request)
        body = await request.body()
        return JSONResponse(
            {"n": n, "echo": body.decode("latin-1")},
            status_code=201,
            headers={"location": f"/payments/{n}", "set-cookie": "s=1", "x-trace": "t"},
        )

    async def stream(request: Request) -> Response:
        probe.calls += 1

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"chunk-{i};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    routes = [
        Route("/payments", payments, methods=["POST", "PATCH", "PUT", "GET"]),
        Route("/other", payments, methods=["POST"]),
        Route("/stream", stream, methods=["POST"]),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes)


def wrap(
    app: Any,
    store: IdempotencyStore | None = None,
    *,
    config: IdempotencyConfig | None = None,
    **kwargs: Any,
) -> IdempotencyMiddleware:
    return IdempotencyMiddleware(
        app,
        store=store if store is not None else MemoryStore(),
        resolver=kwargs.pop("resolver", header_resolver),
        secret=kwargs.pop("secret", SECRET),
        config=config,
        **kwargs,
    )


def inside(app: Starlette, store: IdempotencyStore | None = None, **kwargs: Any) -> Starlette:
    """Install the middleware the usual way (inside Starlette's error handling), not around the app."""
    app.add_middleware(
        IdempotencyMiddleware,
        store=store if store is not None else MemoryStore(),
        resolver=kwargs.pop("resolver", header_resolver),
        secret=kwargs.pop("secret", SECRET),
        **kwargs,
    )
    return app


def installed(app: Starlette) -> IdempotencyMiddleware:
    """The middleware instance Starlette built for ``app`` (after its first request)."""
    node: Any = app.middleware_stack
    while node is not None and not isinstance(node, IdempotencyMiddleware):
        node = getattr(node, "app", None)
    assert node is not None
    return node


def client(app: Any, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def headers(key: str | None = "k-1", user: str | None = "alice", **extra: str) -> dict[str, str]:
    out = dict(extra)
    if key is not None:
        out["idempotency-key"] = key
    if user is not None:
        out["x-user"] = user
    return out
