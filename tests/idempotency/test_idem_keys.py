"""Idempotency-Key header parsing (spec §2.3) and scope HMAC (§2.4): tables and Hypothesis fuzzing."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.idempotency import InvalidKey, derived_key, is_uuid, is_uuid4, parse_key_header, scope_id
from stalwart.idempotency._keys import check_secret, length_prefixed

SECRET = b"s" * 32


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'"abc"', "abc"),
        (b'"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (b'  "abc"  ', "abc"),  # OWS around the field value
        (b'\t"abc"\t', "abc"),
        (b'"a b c"', "a b c"),  # SP is allowed inside an sf-string
        (b'"a\\"b"', 'a"b'),
        (b'"a\\\\b"', "a\\b"),
        (b'"abc";x=1', "abc"),  # parameters are allowed and ignored
        (b'"abc";x', "abc"),
        (b'"abc"; x=?1', "abc"),
        (b'"abc";x=tok/en:1;y="s";z=:YWJj:;w=-1.5;d=@1700000000', "abc"),
        (b'"abc";*k=*', "abc"),
        (b'"' + b"k" * 255 + b'"', "k" * 255),
    ],
)
def test_sf_string_items_are_accepted(raw: bytes, key: str) -> None:
    parsed = parse_key_header([raw], lenient=False)
    assert parsed is not None
    assert parsed.key == key
    assert parsed.lenient is False


@pytest.mark.parametrize(
    "raw",
    [
        b'""',  # empty key
        b'"' + b"k" * 256 + b'"',  # too long
        b'"abc',  # unterminated
        b'"abc" "def"',  # trailing garbage
        b'"abc", "def"',  # a list, not an item
        b'"a\\b"',  # invalid escape
        b'"a\x01b"',  # control character
        b'"a\x7fb"',
        b'"abc";X=1',  # upper-case parameter key
        b'"abc";=1',
        b'"abc";x=',
        b'"abc";x=1.2345',  # four fractional digits
        b'"abc";x=1234567890123456',  # 16 integer digits
        b'"abc";x=?2',
        b'"abc";x=:ab$:',
        b'"abc";x=@1.5',
        b'"abc";x=(1 2)',  # inner lists are not bare items
        b'"abc" ;x=1',  # no space before a parameter
        '"caf\u00e9"'.encode(),  # non-ASCII
        b"\xff",
    ],
)
def test_malformed_values_are_400(raw: bytes) -> None:
    with pytest.raises(InvalidKey):
        parse_key_header([raw])


@pytest.mark.parametrize(
    ("raw", "lenient_ok"),
    [
        (b"abc", True),
        (b"8e03978e-40d5-43e8-bc93-6894a57f9324", True),
        (b"a!#$%&'()*+-./:<=>?@[]^_`{|}~", True),
        (b"a b", False),  # space is not visible ASCII
        (b"a,b", False),
        (b"a;b", False),
        (b"a\\b", False),
        (b'a"b', False),
        (b"", False),
        (b"   ", False),
    ],
)
def test_lenient_bare_values(raw: bytes, lenient_ok: bool) -> None:
    if lenient_ok:
        parsed = parse_key_header([raw])
        assert parsed is not None
        assert parsed.key == raw.decode()
        assert parsed.lenient is True
        with pytest.raises(InvalidKey):  # strict mode refuses the bare form
            parse_key_header([raw], lenient=False)
    else:
        with pytest.raises(InvalidKey):
            parse_key_header([raw])


def test_missing_header_is_none_and_duplicates_are_400() -> None:
    assert parse_key_header([]) is None
    with pytest.raises(InvalidKey, match="more than one"):
        parse_key_header([b'"a"', b'"a"'])


def test_length_limits_and_validator() -> None:
    assert parse_key_header([b"k" * 10], max_length=10) is not None
    with pytest.raises(InvalidKey):
        parse_key_header([b"k" * 11], max_length=10)
    with pytest.raises(InvalidKey):
        parse_key_header([b"short"], min_length=20)
    good = str(uuid.uuid4())
    assert parse_key_header([good.encode()], validator=is_uuid4) is not None
    with pytest.raises(InvalidKey):
        parse_key_header([b"not-a-uuid"], validator=is_uuid4)

    def explode(key: str) -> bool:
        raise RuntimeError("validator bug")

    with pytest.raises(InvalidKey):  # a failing validator is a 400, never a 500
        parse_key_header([b"abc"], validator=explode)


def test_invalid_key_reason_never_echoes_the_key() -> None:
    with pytest.raises(InvalidKey) as info:
        parse_key_header([b'"secret-value"', b'"x"'])
    assert "secret-value" not in info.value.reason


def test_uuid_checks() -> None:
    assert is_uuid4(str(uuid.uuid4()))
    assert is_uuid(str(uuid.uuid1()))
    assert not is_uuid4(str(uuid.uuid1()))
    assert not is_uuid("8e03978e40d543e8bc936894a57f9324")


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=300), max_size=3), st.booleans())
def test_fuzz_every_input_is_a_key_or_invalid(values: list[bytes], lenient: bool) -> None:
    try:
        parsed = parse_key_header(values, lenient=lenient)
    except InvalidKey:
        return
    if not values:
        assert parsed is None
        return
    assert parsed is not None
    assert 1 <= len(parsed.key) <= 255
    assert all(" " <= ch <= "~" for ch in parsed.key)


_SF_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@given(st.text(_SF_CHARS, min_size=1, max_size=255))
def test_round_trip_of_serialised_sf_strings(key: str) -> None:
    serialised = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    parsed = parse_key_header([serialised.encode()], lenient=False)
    assert parsed is not None
    assert parsed.key == key


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_fuzz_structured_looking_inputs(tail: str) -> None:
    for raw in (f'"k"{tail}', f'"k";{tail}', f"k{tail}", tail):
        try:
            parse_key_header([raw.encode()])
        except InvalidKey:
            pass


def test_length_prefixing_is_unambiguous() -> None:
    assert length_prefixed(b"ab", b"c") != length_prefixed(b"a", b"bc")


def test_scope_id_separates_every_field() -> None:
    base = {"tenant": "t", "principal": "p", "namespace": "default", "key": "k"}
    ids = {scope_id(SECRET, **base)}
    for field, value in base.items():
        changed = dict(base, **{field: value + "x"})
        ids.add(scope_id(SECRET, **changed))
    # Moving a character between adjacent fields changes the id (length prefixes).
    ids.add(scope_id(SECRET, tenant="tp", principal="", namespace="default", key="k"))
    assert len(ids) == 6
    assert scope_id(b"t" * 32, **base) != scope_id(SECRET, **base)
    record_id = scope_id(SECRET, **base)
    assert len(record_id) == 64
    assert "k" not in record_id.replace("k", "")  # hex only: no raw key material
    int(record_id, 16)


def test_derived_key_is_stable_and_a_valid_key() -> None:
    rid = scope_id(SECRET, tenant="t", principal="p", namespace="default", key="k")
    first = derived_key(SECRET, rid, "stripe")
    assert first == derived_key(SECRET, rid, "stripe")
    assert first != derived_key(SECRET, rid, "email")
    assert parse_key_header([first.encode()]) is not None


def test_check_secret() -> None:
    assert check_secret("x" * 32) == b"x" * 32
    with pytest.raises(ValueError, match="at least 32 bytes"):
        check_secret(b"short")
    with pytest.raises(TypeError):
        check_secret(42)  # type: ignore[arg-type]
