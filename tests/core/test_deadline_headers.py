"""Deadline headers (pure): table tests per format, Hypothesis properties (every input gives a valid budget or is
ignored; the outgoing formats round-trip without ever giving the callee more time), and the precedence rule."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart._deadline_headers import (
    DEFAULT_INCOMING_HEADERS,
    format_grpc_timeout,
    format_request_deadline_ms,
    parse_envoy_timeout_ms,
    parse_grpc_timeout,
    parse_request_deadline_ms,
    parse_x_deadline,
    read_budget,
)

ALL = frozenset(name.encode() for name in DEFAULT_INCOMING_HEADERS)
NOW = 1_700_000_000.0


def wall() -> float:
    return NOW


def no_wall_clock() -> float:
    raise AssertionError("the wall clock must be read only for X-Deadline")


# -- table tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"250", 0.25),
        ("1500", 1.5),
        (b"0", 0.0),
        (b"00000007", 0.007),
        (b"99999999", 99_999.999),
        (b" \t42 ", 0.042),
        (b"", None),
        (b"   ", None),
        (b"123456789", None),  # 9 digits
        (b"-5", None),
        (b"+5", None),
        (b"1.5", None),
        (b"1e3", None),
        (b"1_000", None),
        (b"12ms", None),
        ("²", None),  # a digit to str.isdigit, not an ASCII digit
        ("٣", None),
        ("€", None),  # not latin-1
        (b"5\n", None),
    ],
)
def test_request_deadline_ms(value: bytes | str, expected: float | None) -> None:
    assert parse_request_deadline_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"1H", 3600.0),
        (b"2M", 120.0),
        (b"5S", 5.0),
        (b"250m", 0.25),
        (b"1500u", 0.0015),
        (b"1000000n", 0.001),
        (b"0n", 0.0),
        (b"99999999S", 99_999_999.0),
        (b" 5S ", 5.0),
        (b"5", None),  # no unit
        (b"S", None),  # no value
        (b"5s", None),  # units are case-sensitive: s is not a unit
        (b"5h", None),
        (b"5 S", None),
        (b"123456789S", None),  # 9 digits
        (b"-5S", None),
        (b"1.5S", None),
        (b"", None),
    ],
)
def test_grpc_timeout(value: bytes, expected: float | None) -> None:
    result = parse_grpc_timeout(value)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"15000", 15.0), (b"1234567890", 1_234_567.89), (b"12345678901", None), (b"", None), (b"1.5", None)],
)
def test_envoy_expected_timeout(value: bytes, expected: float | None) -> None:
    assert parse_envoy_timeout_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"1700000002", 2.0),
        (b"1700000000.25", 0.25),
        (b"1699999990", 0.0),  # passed: already spent
        (b"1700000000", 0.0),
        (b" 1700000001.5 ", 1.5),
        (b"1700000001.", None),
        (b".5", None),
        (b"1.7e9", None),
        (b"-1700000001", None),
        (b"1700000001.2.3", None),
        (b"Tue, 14 Nov 2023 22:13:20 GMT", None),  # not an HTTP-date header
        (b"9" * 33, None),  # too long
        (b"", None),
    ],
)
def test_x_deadline_is_absolute_epoch_seconds(value: bytes, expected: float | None) -> None:
    assert parse_x_deadline(value, NOW) == expected


def test_x_deadline_with_a_non_finite_now_is_ignored() -> None:
    assert parse_x_deadline(b"1700000002", math.nan) is None


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1.2345, "1234"),
        (0.0009, "0"),  # under a millisecond: already spent for the callee
        (0.0, "0"),
        (-3.0, "0"),
        (math.nan, "0"),
        (99_999.999, "99999999"),
        (1e9, "99999999"),
        (math.inf, "99999999"),
    ],
)
def test_format_request_deadline_ms(seconds: float, expected: str) -> None:
    assert format_request_deadline_ms(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.05, "50000000n"),
        (0.25, "250000u"),  # 250000000n has 9 digits
        (5.0, "5000000u"),
        (500.0, "500000m"),
        (1e6, "1000000S"),
        (1e9, "16666666M"),
        (1e11, "27777777H"),
        (math.inf, "99999999H"),
        (0.0, "0n"),
        (-1.0, "0n"),
        (math.nan, "0n"),
    ],
)
def test_format_grpc_timeout(seconds: float, expected: str) -> None:
    assert format_grpc_timeout(seconds) == expected


# -- properties --------------------------------------------------------------------------------------------------

header_values = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    st.from_regex(rb"\A[ \t]*[0-9]{0,12}(\.[0-9]{0,4})?[HMSmun]?[ \t]*\Z"),
)


def valid_budget(result: float | None) -> bool:
    return result is None or (isinstance(result, float) and math.isfinite(result) and result >= 0.0)


@given(header_values)
def test_every_value_is_a_valid_budget_or_ignored(value: bytes | str) -> None:
    assert valid_budget(parse_request_deadline_ms(value))
    assert valid_budget(parse_grpc_timeout(value))
    assert valid_budget(parse_envoy_timeout_ms(value))


@given(header_values, st.floats(allow_nan=True, allow_infinity=True))
def test_every_x_deadline_is_a_valid_budget_or_ignored(value: bytes | str, now: float) -> None:
    assert valid_budget(parse_x_deadline(value, now))


@given(st.floats(min_value=0.0, max_value=99_999.0, allow_nan=False))
def test_request_deadline_round_trip_never_gives_more_time(seconds: float) -> None:
    parsed = parse_request_deadline_ms(format_request_deadline_ms(seconds))
    assert parsed is not None
    assert parsed <= seconds
    assert seconds - parsed < 0.001 + 1e-9


@given(st.floats(min_value=0.0, max_value=3.5e11, allow_nan=False))
def test_grpc_round_trip_never_gives_more_time(seconds: float) -> None:
    text = format_grpc_timeout(seconds)
    assert len(text) <= 9
    parsed = parse_grpc_timeout(text)
    assert parsed is not None
    assert parsed <= seconds * (1 + 1e-12)
    assert seconds - parsed <= max(1e-9, seconds * 1e-5) * (1 + 1e-9)


@given(st.lists(st.tuples(st.sampled_from([*sorted(ALL), b"x-other", b"content-type"]), header_values), max_size=6))
def test_read_budget_is_the_smallest_valid_value(raw_headers: list[tuple[bytes, bytes | str]]) -> None:
    headers = [(name, value.encode() if isinstance(value, str) else value) for name, value in raw_headers]
    malformed: list[str] = []
    found = read_budget(headers, ALL, wall, malformed)
    parsers = {
        b"request-deadline-ms": parse_request_deadline_ms,
        b"grpc-timeout": parse_grpc_timeout,
        b"x-envoy-expected-rq-timeout-ms": parse_envoy_timeout_ms,
        b"x-deadline": lambda v: parse_x_deadline(v, NOW),
    }
    budgets = [(name, parsers[name](value)) for name, value in headers if name in parsers]
    valid = [b for _, b in budgets if b is not None]
    assert found == (min(valid) if valid else None)
    assert malformed == [name.decode() for name, b in budgets if b is None]
    assert valid_budget(found)


# -- read_budget -------------------------------------------------------------------------------------------------


def test_no_deadline_header() -> None:
    malformed: list[str] = []
    assert read_budget([(b"host", b"example"), (b"content-length", b"0")], ALL, no_wall_clock, malformed) is None
    assert malformed == []


def test_the_tightest_header_wins_whatever_its_format() -> None:
    headers = [
        (b"x-deadline", b"1700000009"),
        (b"request-deadline-ms", b"3000"),
        (b"grpc-timeout", b"2S"),
        (b"x-envoy-expected-rq-timeout-ms", b"15000"),
    ]
    assert read_budget(headers, ALL, wall) == 2.0
    headers.append((b"x-deadline", b"1700000001"))
    assert read_budget(headers, ALL, wall) == 1.0


def test_malformed_values_are_ignored_and_named() -> None:
    headers = [(b"request-deadline-ms", b"soon"), (b"grpc-timeout", b"750m"), (b"grpc-timeout", b"5")]
    malformed: list[str] = []
    assert read_budget(headers, ALL, no_wall_clock, malformed) == 0.75
    assert malformed == ["request-deadline-ms", "grpc-timeout"]
    assert read_budget([(b"request-deadline-ms", b"-1")], ALL, no_wall_clock) is None  # no list: nothing reported


def test_only_accepted_headers_are_read() -> None:
    headers = [(b"x-deadline", b"1700000001"), (b"request-deadline-ms", b"5000")]
    accepted = frozenset({b"request-deadline-ms"})
    assert read_budget(headers, accepted, no_wall_clock) == 5.0
    assert read_budget(headers, frozenset({b"x-other"}), no_wall_clock) is None
