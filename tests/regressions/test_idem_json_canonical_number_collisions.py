"""Regression: with ``json_canonical`` two *different* requests could share one fingerprint, so the second got the
first one's replay instead of 422 ("key reused with a different request").

RFC 8785 serialises every number as the IEEE 754 double it parses to. Python's ``json`` parses integers exactly,
and a handler (or pydantic's Decimal fields) sees the exact value, but the canonical form went through ``float()``:
``{"recipient": 9007199254740993}`` and ``{"recipient": 9007199254740992}`` (ids above 2**53 are common: snowflake
ids) and ``{"amount": 0.30000000000000001}`` and ``{"amount": 0.3}`` hashed the same. Powertools' payload
validation bugs (aws-powertools/powertools-lambda-python #3781, powertools-lambda-typescript #1499) are the same kind
of fault: a reused key with a different payload must never be served the stored answer. A number a double cannot
hold exactly is not I-JSON, so such a body is now hashed as its raw bytes (a changed value is a 422; a merely
reformatted one may be a 422 too, never a wrong replay).
"""

from __future__ import annotations

import pytest
from _idem_asgi import CountingApp, post, wrap

from stalwart.idempotency import (
    FingerprintSpec,
    IdempotencyConfig,
    canonical_json,
    compute_fingerprint,
)

JSON = [(b"content-type", b"application/json")]


def fp(body: bytes) -> bytes:
    spec = FingerprintSpec(json_canonical=True)
    return compute_fingerprint(spec, method="POST", raw_path=b"/p", query=b"", headers=JSON, body=body)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (b'{"recipient": 9007199254740993}', b'{"recipient": 9007199254740992}'),
        (b'{"recipient": 12345678901234567891}', b'{"recipient": 12345678901234567890}'),
        (b'{"n": -9007199254740993}', b'{"n": -9007199254740992}'),
        (b'{"amount": 0.30000000000000001}', b'{"amount": 0.3}'),
        (b'{"amount": 123456789012345678.99}', b'{"amount": 123456789012345678.98}'),
        (b'{"x": 1e400}', b'{"x": 1e401}'),
        (b'{"n": 1152921504606846976}', b'{"n": 1152921504606847000}'),  # 2**60 and its ECMAScript spelling
    ],
)
def test_different_numbers_never_share_a_fingerprint(a: bytes, b: bytes) -> None:
    assert fp(a) != fp(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (b'{"a": 1, "b": 2}', b'{"b":2,"a":1}'),
        (b'{"n": 1.0}', b'{"n": 1}'),
        (b'{"n": 1e2}', b'{"n": 100}'),
        (b'{"n": 9007199254740992}', b'{"n": 9007199254740992.0}'),
        (b'{"n": 1152921504606847000}', b'{"n": 1.152921504606847e18}'),
        (b'{"n": [23648963351166170]}', b'{"n":[2.364896335116617e+16]}'),
        (b'{"n": 0.1}', b'{"n": 1e-1}'),
        (b'{"n": -0}', b'{"n": 0}'),
    ],
)
def test_the_same_numbers_spelled_differently_still_match(a: bytes, b: bytes) -> None:
    assert fp(a) == fp(b)


def test_canonical_json_itself_is_still_plain_rfc_8785() -> None:
    assert canonical_json(2**60) == b"1152921504606847000"  # the ECMAScript spelling of the double
    assert canonical_json([0.3, 2**53]) == b"[0.3,9007199254740992]"


async def test_a_reused_key_with_another_big_id_is_422_not_the_replay() -> None:
    app = CountingApp(body=b"paid")
    mw = wrap(app, config=IdempotencyConfig(fingerprint=FingerprintSpec(json_canonical=True)))

    async def status(body: bytes) -> int | None:
        return (await post(mw, body=body, headers=JSON)).status

    assert await status(b'{"recipient": 9007199254740993, "amount": 5}') == 201
    assert await status(b'{"recipient": 9007199254740993, "amount": 5}') == 201  # the same bytes: a replay
    assert await status(b'{"recipient": 9007199254740992, "amount": 5}') == 422
    assert app.calls == 1
