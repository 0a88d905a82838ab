"""Regression: a replayed HEAD response said ``content-length: 0`` instead of the length the original announced.

Spec §2.10 replays the filtered, ordered headers of the original and its exact body; ``content-length`` is recomputed
from the stored body, which is right for every method but HEAD: a HEAD response carries the length of the body a GET
would have had, and no body (RFC 9110 §9.3.2). With HEAD in ``methods``, the stored body was empty and the replay
announced ``content-length: 0``, so a client using HEAD to size a download (or a cache validating one) was told the
resource is empty. A HEAD response's own ``content-length`` is now stored and replayed as it was, in its place.
"""

from __future__ import annotations

from typing import Any

import httpx
from _idem_asgi import post, wrap
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, Identity, MemoryStore

SECRET = b"s" * 32
CONFIG = IdempotencyConfig(methods=frozenset({"POST", "HEAD"}))


def app_for(runs: list[str]) -> Starlette:
    async def report(request: Request) -> Response:
        runs.append(request.method)
        return Response(b"x" * 1234, media_type="application/pdf", headers={"etag": '"v1"'})

    app = Starlette(routes=[Route("/report", report, methods=["GET", "POST"])])  # Starlette answers HEAD too
    app.add_middleware(
        IdempotencyMiddleware, store=MemoryStore(), secret=SECRET, resolver=lambda s: Identity("alice"), config=CONFIG
    )
    return app


async def test_a_replayed_head_keeps_the_original_content_length() -> None:
    runs: list[str] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app_for(runs)), base_url="http://t") as client:
        first = await client.head("/report", headers={"idempotency-key": "k"})
        replay = await client.head("/report", headers={"idempotency-key": "k"})
    assert runs == ["HEAD"]
    assert first.headers["content-length"] == "1234"
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers.get_list("content-length") == ["1234"]
    assert replay.content == b""
    original = [(k, v) for k, v in first.headers.multi_items() if k != "idempotent-replayed"]
    replayed = [(k, v) for k, v in replay.headers.multi_items() if k != "idempotent-replayed"]
    assert replayed == original  # the same headers, in the same order


async def test_a_replayed_post_still_gets_a_recomputed_length() -> None:
    runs: list[str] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app_for(runs)), base_url="http://t") as client:
        await client.post("/report", headers={"idempotency-key": "k"})
        replay = await client.post("/report", headers={"idempotency-key": "k"})
    assert runs == ["POST"]
    assert replay.headers.get_list("content-length") == ["1234"]
    assert len(replay.content) == 1234


async def test_a_raw_asgi_head_response_is_replayed_with_its_length() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"99")]})
        await send({"type": "http.response.body", "body": b""})

    mw = wrap(app, resolver=lambda s: Identity("a"), config=CONFIG)
    await post(mw, key="k", method="HEAD", path="/r", body=b"")
    replay = await post(mw, key="k", method="HEAD", path="/r", body=b"")
    assert [v for k, v in replay.raw_headers if k == b"content-length"] == [b"99"]
