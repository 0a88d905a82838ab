"""Regression: route settings were cached under less than what decides them, so one route's settings bled into another.

1. An ``@idempotent`` endpoint's settings are its overrides applied on top of the settings of the path it is served at
   (the ``routes`` template that matches, else the app-wide ``config``). They were cached by endpoint alone, so when
   one endpoint function is routed twice — an API mounted under ``/v1`` and ``/v2``, FastAPI's ``include_router``
   with two prefixes — the first path requested decided for both: with ``routes={"POST /v2/pay":
   IdempotencyConfig(required=True)}``, a request to ``/v1/pay`` first made keyless requests to ``/v2/pay`` run
   without idempotency. Now keyed by the endpoint and the path's own settings.
2. The per-request route cache was keyed by method and path, but a Starlette router may dispatch on the ``Host``
   header too (``Host`` routes): with ``/pay`` on ``api.example.com`` (``@idempotent(required=True)``) and on
   ``admin.example.com`` (``@idempotent(enabled=False)``), whichever host was requested first decided for both.
   Now keyed by method, path and host.
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Route, Router

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, Identity, MemoryStore, idempotent

SECRET = b"s" * 32


@idempotent(namespace="payments")
async def pay(request: Request) -> PlainTextResponse:
    return PlainTextResponse("charged", status_code=201)


def build(**routes: IdempotencyConfig | None) -> IdempotencyMiddleware:
    inner = Starlette(routes=[Route("/v1/pay", pay, methods=["POST"]), Route("/v2/pay", pay, methods=["POST"])])
    return IdempotencyMiddleware(
        inner,
        store=MemoryStore(),
        resolver=lambda scope: Identity("alice"),
        secret=SECRET,
        routes={f"POST /{version}/pay": cfg for version, cfg in routes.items()},
        purge_interval=None,
    )


async def keyless_statuses(app: IdempotencyMiddleware, paths: list[str]) -> dict[str, int]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        return {path: (await client.post(path, content=b"{}")).status_code for path in paths}


async def test_each_path_keeps_its_own_settings_whichever_is_requested_first() -> None:
    required_on_v2 = {"v2": IdempotencyConfig(required=True)}
    first_v1 = await keyless_statuses(build(**required_on_v2), ["/v1/pay", "/v2/pay"])
    first_v2 = await keyless_statuses(build(**required_on_v2), ["/v2/pay", "/v1/pay"])
    assert first_v1 == first_v2 == {"/v1/pay": 201, "/v2/pay": 400}


@idempotent(required=True)
async def api_pay(request: Request) -> PlainTextResponse:
    return PlainTextResponse("api", status_code=201)


@idempotent(enabled=False)
async def admin_pay(request: Request) -> PlainTextResponse:
    return PlainTextResponse("admin", status_code=201)


def build_hosts() -> IdempotencyMiddleware:
    inner = Starlette(
        routes=[
            Host("api.example.com", Router([Route("/pay", api_pay, methods=["POST"])])),
            Host("admin.example.com", Router([Route("/pay", admin_pay, methods=["POST"])])),
        ]
    )
    return IdempotencyMiddleware(
        inner, store=MemoryStore(), resolver=lambda scope: Identity("alice"), secret=SECRET, purge_interval=None
    )


async def test_each_host_keeps_its_own_settings_whichever_is_requested_first() -> None:
    for order in (["api", "admin"], ["admin", "api"]):
        app = build_hosts()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app)) as client:
            statuses = {host: (await client.post(f"http://{host}.example.com/pay")).status_code for host in order}
        assert statuses == {"api": 400, "admin": 201}, order
