"""Regression: ``json_canonical`` and ``fields`` silently did nothing when ``content-type`` was not in the
fingerprint's header allow-list.

Spec §2.5: "When the body is JSON, hash its RFC 8785 (JCS) serialization". Whether the body is JSON was read only
inside the loop hashing the allow-listed headers, so ``FingerprintSpec(headers=(), json_canonical=True)`` (or any
list leaving ``content-type`` out, and likewise ``fields``) hashed the raw bytes: an honest retry whose JSON members
came in another order, or a change in a field the route had excluded, got a false 422. The content type is now read
from the request for JSON detection whatever the allow-list hashes.
"""

from __future__ import annotations

from typing import Any

import pytest
from _idem_asgi import CountingApp, post, wrap

from stalwart.idempotency import (
    FingerprintSpec,
    IdempotencyConfig,
    compute_fingerprint,
)

BODY = b'{"amount":1,"currency":"EUR"}'
REORDERED = b'{ "currency": "EUR", "amount": 1.0 }'
EXTRA = b'{"amount":1,"currency":"EUR","note":"x"}'
ALLOW_LISTS = [(), ("content-encoding",), ("x-tenant",), ("content-type", "content-encoding")]
JSON_TYPES = [b"application/json", b"Application/JSON; charset=utf-8", b"application/problem+json"]


def fp(spec: FingerprintSpec, body: bytes, content_type: bytes | None, name: bytes = b"content-type") -> bytes:
    headers = [] if content_type is None else [(name, content_type)]
    return compute_fingerprint(spec, method="POST", raw_path=b"/p", query=b"", headers=headers, body=body)


@pytest.mark.parametrize("allow", ALLOW_LISTS)
@pytest.mark.parametrize("content_type", JSON_TYPES)
@pytest.mark.parametrize("name", [b"content-type", b"Content-Type"])
def test_json_canonical_applies_whatever_the_allow_list(
    allow: tuple[str, ...], content_type: bytes, name: bytes
) -> None:
    spec = FingerprintSpec(headers=allow, json_canonical=True)
    assert fp(spec, BODY, content_type, name) == fp(spec, REORDERED, content_type, name)
    assert fp(spec, BODY, content_type, name) != fp(spec, EXTRA, content_type, name)


@pytest.mark.parametrize("allow", ALLOW_LISTS)
@pytest.mark.parametrize("fields", [("/amount", "/currency"), lambda doc: [doc["amount"], doc["currency"]]])
def test_fields_apply_whatever_the_allow_list(allow: tuple[str, ...], fields: Any) -> None:
    spec = FingerprintSpec(headers=allow, fields=fields)
    assert (
        fp(spec, BODY, b"application/json")
        == fp(spec, EXTRA, b"application/json")
        == fp(spec, REORDERED, b"application/json")
    )
    assert fp(spec, BODY, b"application/json") != fp(spec, b'{"amount":2,"currency":"EUR"}', b"application/json")


@pytest.mark.parametrize("allow", ALLOW_LISTS)
@pytest.mark.parametrize("content_type", [None, b"text/plain", b"application/x-www-form-urlencoded"])
def test_a_body_not_declared_json_is_still_hashed_raw(allow: tuple[str, ...], content_type: bytes | None) -> None:
    spec = FingerprintSpec(headers=allow, json_canonical=True)
    assert fp(spec, BODY, content_type) != fp(spec, REORDERED, content_type)


def test_a_content_type_left_out_of_the_allow_list_is_not_hashed() -> None:
    spec = FingerprintSpec(headers=(), json_canonical=True)
    assert fp(spec, BODY, b"application/json") == fp(spec, BODY, b"application/json; charset=utf-8")
    # With it in the list its value counts, as before.
    listed = FingerprintSpec(json_canonical=True)
    assert fp(listed, BODY, b"application/json") != fp(listed, BODY, b"application/json; charset=utf-8")


async def test_an_honest_retry_with_reordered_json_is_replayed_not_422() -> None:
    app = CountingApp(body=b"created")
    mw = wrap(app, config=IdempotencyConfig(fingerprint=FingerprintSpec(headers=(), json_canonical=True)))

    async def call(body: bytes) -> tuple[int | None, bytes]:
        answer = await post(mw, body=body, headers=[(b"content-type", b"application/json")])
        return answer.status, answer.body

    assert await call(BODY) == (201, b"created")
    assert await call(REORDERED) == (201, b"created")
    assert app.calls == 1
