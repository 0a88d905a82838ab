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
from _idem_asgi import SERVER_SCOPE, CountingApp, post, wrap

from stalwart.idempotency import FingerprintSpec, IdempotencyConfig, IdempotencyMiddleware
from stalwart.idempotency import compute_fingerprint as fingerprint


def charge() -> CountingApp:
    """Reads the whole body, answers 201 ``charge <n>`` (text/plain) on its n-th run."""
    return CountingApp(body=lambda run: f"charge {run}".encode(), headers=[(b"content-type", b"text/plain")])


async def call(mw: Any, headers: list[tuple[bytes, bytes]], body: bytes = b'{"amount": 1}') -> tuple[int | None, bytes]:
    # No idempotency-key of the helper's: the test writes the header lines itself; nothing may read past the body.
    answer = await post(mw, key=None, headers=headers, body=body, scope=SERVER_SCOPE, read_once=True)
    return answer.status, answer.body


def middleware(app: Any, **config: Any) -> IdempotencyMiddleware:
    return wrap(app, config=IdempotencyConfig(**config))


@pytest.mark.parametrize("name", [b"Idempotency-Key", b"IDEMPOTENCY-KEY", b"idempotency-KEY"])
async def test_a_key_header_in_any_case_is_honoured(name: bytes) -> None:
    app = charge()
    mw = middleware(app)
    first = await call(mw, [(name, b"k-1")])
    second = await call(mw, [(b"idempotency-key", b"k-1")])
    assert app.calls == 1
    assert first == second == (201, b"charge 1")
    assert mw.statistics()["replays"] == 1


async def test_duplicated_key_lines_in_mixed_case_are_400() -> None:
    app = charge()
    status, _ = await call(middleware(app), [(b"Idempotency-Key", b"a"), (b"idempotency-key", b"b")])
    assert status == 400
    assert app.calls == 0


async def test_a_required_key_is_found_in_any_case() -> None:
    app = charge()
    status, _ = await call(middleware(app, required=True), [(b"Idempotency-Key", b"k-1")])
    assert status == 201
    assert app.calls == 1


async def test_declared_content_length_is_checked_in_any_case() -> None:
    app = charge()
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
