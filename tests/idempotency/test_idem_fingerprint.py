"""Request fingerprints (spec §2.5) and RFC 8785 canonical JSON."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart.idempotency import FingerprintSpec, canonical_json, compute_fingerprint

JSON_CT = [(b"content-type", b"application/json")]


def fp(spec: FingerprintSpec | None = None, **overrides: object) -> bytes:
    request: dict[str, object] = {
        "method": "POST",
        "raw_path": b"/payments",
        "query": b"",
        "headers": JSON_CT,
        "body": b'{"amount": 10, "currency": "EUR"}',
    }
    request.update(overrides)
    return compute_fingerprint(spec or FingerprintSpec(), **request)  # type: ignore[arg-type]


def test_every_field_matters() -> None:
    base = fp()
    assert len(base) == 32
    assert fp(method="post") == base  # method is upper-cased
    assert fp(method="PATCH") != base
    assert fp(raw_path=b"/payments/") != base
    assert fp(raw_path=b"/pay%6Dents") != base  # raw path, percent-encoding preserved
    assert fp(query=b"a=1") != base
    assert fp(body=b'{"amount": 11, "currency": "EUR"}') != base
    assert fp(headers=[(b"content-type", b"text/plain")]) != base
    assert fp(headers=[*JSON_CT, (b"content-encoding", b"gzip")]) != base


def test_excluded_headers_never_matter() -> None:
    base = fp()
    noisy = [
        *JSON_CT,
        (b"authorization", b"Bearer x"),
        (b"cookie", b"a=b"),
        (b"date", b"Mon"),
        (b"traceparent", b"00-1"),
        (b"idempotency-key", b"k"),
        (b"content-length", b"33"),
        (b"host", b"example"),
        (b"user-agent", b"x"),
    ]
    assert fp(headers=noisy) == base


def test_content_type_media_type_is_case_insensitive_but_parameters_are_kept() -> None:
    base = fp(headers=[(b"content-type", b"application/json; charset=utf-8")])
    assert fp(headers=[(b"content-type", b"Application/JSON; charset=utf-8")]) == base
    assert fp(headers=[(b"content-type", b"application/json; charset=latin-1")]) != base


def test_json_canonical_ignores_spelling() -> None:
    spec = FingerprintSpec(json_canonical=True)
    a = fp(spec, body=b'{"amount": 10, "currency": "EUR"}')
    b = fp(spec, body=b'{ "currency":"EUR",\n "amount":1.0e1 }')
    assert a == b
    assert fp(spec, body=b'{"amount": 11, "currency": "EUR"}') != a
    # Without the option the bytes matter.
    assert fp(body=b'{"amount": 10, "currency": "EUR"}') != fp(body=b'{"currency":"EUR","amount":10}')


def test_json_canonical_falls_back_to_raw_bytes_without_collisions() -> None:
    spec = FingerprintSpec(json_canonical=True)
    for body in (b"not json", b'{"a": NaN}', b'{"a": 1, "a": 2}', b'"\\ud800"'):
        assert fp(spec, body=body) == fp(FingerprintSpec(), body=body)
    # Non-JSON media types are hashed raw.
    text = [(b"content-type", b"text/plain")]
    assert fp(spec, headers=text, body=b"{}") == fp(headers=text, body=b"{}")
    # A raw body equal to some canonical form does not collide with it.
    assert fp(spec, body=b'{"a":1}') != fp(FingerprintSpec(), body=b'{"a":1}')


def test_fields_by_pointer_and_callable() -> None:
    spec = FingerprintSpec(fields=("/amount", "/currency"))
    a = fp(spec, body=b'{"amount": 10, "currency": "EUR", "note": "x"}')
    assert fp(spec, body=b'{"amount": 10, "currency": "EUR", "note": "y"}') == a
    assert fp(spec, body=b'{"amount": 12, "currency": "EUR", "note": "x"}') != a
    # A missing field differs from an explicit null.
    assert fp(spec, body=b'{"amount": 10}') != fp(spec, body=b'{"amount": 10, "currency": null}')
    items = FingerprintSpec(fields=("/items/0/sku", "/a~1b"))
    assert fp(items, body=b'{"items": [{"sku": 1}], "a/b": 2}') != fp(items, body=b'{"items": [{"sku": 2}], "a/b": 2}')
    call = FingerprintSpec(fields=lambda doc: doc["amount"])
    assert fp(call, body=b'{"amount": 10, "x": 1}') == fp(call, body=b'{"amount": 10, "x": 2}')

    def broken(doc: object) -> object:
        raise KeyError("nope")

    assert fp(FingerprintSpec(fields=broken), body=b"{}") == fp(body=b"{}")


def test_query_options() -> None:
    assert fp(FingerprintSpec(exclude_query=True), query=b"a=1") == fp(FingerprintSpec(exclude_query=True))
    canon = FingerprintSpec(query_canonical=True)
    assert fp(canon, query=b"b=2&a=1") == fp(canon, query=b"a=1&b=2")
    assert fp(query=b"b=2&a=1") != fp(query=b"a=1&b=2")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": ("authorization",)},
        {"headers": ("Content-Type",)},
        {"headers": ("idempotency-key",)},
        {"fields": ("amount",)},
        {"fields": 3},
        {"exclude_query": True, "query_canonical": True},
    ],
)
def test_invalid_specs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message names the parameter; checked below for one
        FingerprintSpec(**kwargs)  # type: ignore[arg-type]


# RFC 8785 Appendix B number samples (IEEE 754 value -> ECMAScript form) and §3.2.3's sorting example.
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (333333333.3333333, "333333333.3333333"),
        (-1.5, "-1.5"),
        (1, "1"),
        (123e-20, "1.23e-18"),
    ],
)
def test_jcs_numbers(value: float, text: str) -> None:
    assert canonical_json(value) == text.encode()


def test_jcs_structure_and_sorting() -> None:
    doc = {"\u20ac": "Euro", "\r": "CR", "\ufb33": "Hebrew", "1": "One", "\U0001f600": "Emoji", "\x80": "Ctl", "ö": 1}
    out = canonical_json(doc).decode()
    keys = list(json.loads(out))
    assert keys == ["\r", "1", "\x80", "ö", "\u20ac", "\U0001f600", "\ufb33"]  # UTF-16 code unit order
    assert canonical_json({"b": [1, True, None, "x\n"], "a": {}}) == b'{"a":{},"b":[1,true,null,"x\\n"]}'
    for bad in (math.nan, math.inf, {1: 2}, object()):
        with pytest.raises(ValueError):  # noqa: PT011
            canonical_json(bad)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_jcs_is_valid_json_with_the_same_value_and_idempotent(value: object) -> None:
    out = canonical_json(value)
    parsed = json.loads(out)
    assert canonical_json(parsed) == out
    assert _as_doubles(parsed) == _as_doubles(value)  # every number keeps its IEEE 754 double value


def _as_doubles(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_doubles(v) for k, v in value.items()}
    assert isinstance(value, list | tuple)
    return [_as_doubles(v) for v in value]


@given(json_values)
def test_json_canonical_fingerprint_ignores_formatting(value: object) -> None:
    spec = FingerprintSpec(json_canonical=True)
    compact = json.dumps(value, separators=(",", ":")).encode()
    pretty = json.dumps(value, indent=2, sort_keys=isinstance(value, dict)).encode()
    assert fp(spec, body=compact) == fp(spec, body=pretty)
