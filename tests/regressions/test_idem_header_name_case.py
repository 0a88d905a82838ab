"""Regression: request header names were matched only in lower case, so an ``Idempotency-Key`` header delivered as
``Idempotency-Key`` was not seen at all: the request passed through without a record and every retry charged again.

The ASGI spec says header names *should* be lower-cased, "but it is not required" (servers preserve case on a
best-effort basis). httpx's ASGITransport once passed them as the client wrote them (encode/httpx PR #1351), and
OpenTelemetry's ASGI instrumentation had to make its header lookups case-insensitive for the same reason
(open-telemetry/opentelemetry-python-contrib PR #308; Starlette discussion #3104). The same fault hid
``Content-Type`` from the fingerprint (and from ``json_canonical``'s JSON detection) and ``Content-Length`` from the
413 pre-check. Every request header lookup of the middleware now ignores case.
"""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.idempotency import FingerprintSpec, IdempotencyConfig, IdempotencyMiddleware, Identity, MemoryStore
from stalwart.idempotency import compute_fingerprint as fingerprint

SECRET = b"s" * 32


def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/payments",
        "raw_path": b"/payments",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
    }


class Charge:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": f"charge {self.calls}".encode()})


async def call(mw: Any, headers: list[tuple[bytes, bytes]], body: bytes = b'{"amount": 1}') -> tuple[int, bytes]:
    messages: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        assert not delivered, "the middleware must not read past the body"
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await mw(scope(headers), receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def middleware(app: Any, **config: Any) -> IdempotencyMiddleware:
    return IdempotencyMiddleware(
        app,
        store=MemoryStore(),
        resolver=lambda scope: Identity("alice"),
        secret=SECRET,
        config=IdempotencyConfig(**config),
    )


@pytest.mark.parametrize("name", [b"Idempotency-Key", b"IDEMPOTENCY-KEY", b"idempotency-KEY"])
async def test_a_key_header_in_any_case_is_honoured(name: bytes) -> None:
    app = Charge()
    mw = middleware(app)
    first = await call(mw, [(name, b"k-1")])
    second = await call(mw, [(b"idempotency-key", b"k-1")])
    assert app.calls == 1
    assert first == second == (201, b"charge 1")
    assert mw.statistics()["replays"] == 1


async def test_duplicated_key_lines_in_mixed_case_are_400() -> None:
    app = Charge()
    status, _ = await call(middleware(app), [(b"Idempotency-Key", b"a"), (b"idempotency-key", b"b")])
    assert status == 400
    assert app.calls == 0


async def test_a_required_key_is_found_in_any_case() -> None:
    app = Charge()
    status, _ = await call(middleware(app, required=True), [(b"Idempotency-Key", b"k-1")])
    assert status == 201
    assert app.calls == 1


async def test_declared_content_length_is_checked_in_any_case() -> None:
    app = Charge()
    mw = middleware(app, max_request_body=4)
    status, _ = await call(mw, [(b"idempotency-key", b"k"), (b"Content-Length", b"1000")], body=b"")
    assert status == 413
    assert app.calls == 0


def test_fingerprint_headers_are_matched_in_any_case() -> None:
    def fp(spec: FingerprintSpec, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        return fingerprint(spec, method="POST", raw_path=b"/p", query=b"", headers=headers, body=body)

    plain = FingerprintSpec()
    lower = [(b"content-type", b"application/json")]
    assert fp(plain, [(b"Content-Type", b"application/json")], b"{}") == fp(plain, lower, b"{}")
    assert fp(plain, [(b"Content-Type", b"text/plain")], b"{}") != fp(plain, lower, b"{}")
    canonical = FingerprintSpec(json_canonical=True)
    assert fp(canonical, [(b"CONTENT-TYPE", b"application/json")], b'{"a": 1, "b": 2}') == fp(
        canonical, lower, b'{"b":2,"a":1}'
    )
