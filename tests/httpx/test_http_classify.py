"""Table and property tests of the pure HTTP classification (stalwart.httpx._classify)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart import DeadlineExceeded
from stalwart.httpx import (
    is_breaker_failure_exception,
    is_breaker_failure_status,
    is_idempotent_request,
    is_retryable_exception,
    is_retryable_status,
    parse_retry_after,
)
from stalwart.httpx._classify import MAX_DELTA_SECONDS, parse_http_date, request_was_not_sent

# 1994-11-06 08:49:37 UTC, the RFC's example instant.
RFC_EXAMPLE = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("status", "retryable", "breaker_failure"),
    [
        (200, False, False),
        (201, False, False),
        (304, False, False),
        (400, False, False),
        (401, False, False),
        (403, False, False),
        (404, False, False),
        (408, True, False),
        (409, False, False),
        (422, False, False),
        (429, True, False),
        (499, False, False),
        (500, True, True),
        (501, False, True),
        (502, True, True),
        (503, True, True),
        (504, True, True),
        (505, False, True),
        (599, False, True),
    ],
)
def test_status_table(status: int, retryable: bool, breaker_failure: bool) -> None:
    assert is_retryable_status(status) is retryable
    assert is_breaker_failure_status(status) is breaker_failure


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", {}, True),
        ("HEAD", {}, True),
        ("OPTIONS", {}, True),
        ("PUT", {}, True),
        ("DELETE", {}, True),
        ("TRACE", {}, True),
        ("POST", {}, False),
        ("PATCH", {}, False),
        ("CONNECT", {}, False),
        ("POST", {"Idempotency-Key": "abc"}, True),
        ("PATCH", {"idempotency-key": "abc"}, True),
        ("POST", {"X-Idempotency-Key": "abc"}, False),
    ],
)
def test_idempotent_request_table(method: str, headers: dict[str, str], expected: bool) -> None:
    assert is_idempotent_request(method, httpx.Headers(headers)) is expected


def test_idempotency_header_rule_can_be_disabled() -> None:
    headers = httpx.Headers({"Idempotency-Key": "abc"})
    assert not is_idempotent_request("POST", headers, idempotency_header=None)
    assert is_idempotent_request("POST", headers, methods=frozenset({"POST"}), idempotency_header=None)


_REQUEST = httpx.Request("GET", "https://example.com/")


@pytest.mark.parametrize(
    ("exc", "retryable", "not_sent"),
    [
        (httpx.ConnectError("refused", request=_REQUEST), True, True),
        (httpx.ConnectTimeout("slow connect", request=_REQUEST), True, True),
        (httpx.PoolTimeout("pool", request=_REQUEST), True, True),
        (httpx.ReadTimeout("slow", request=_REQUEST), True, False),
        (httpx.WriteTimeout("slow", request=_REQUEST), True, False),
        (httpx.ReadError("reset", request=_REQUEST), True, False),
        (httpx.WriteError("reset", request=_REQUEST), True, False),
        (httpx.RemoteProtocolError("dropped", request=_REQUEST), True, False),
        (httpx.UnsupportedProtocol("ftp", request=_REQUEST), False, False),
        (httpx.LocalProtocolError("bad header", request=_REQUEST), False, False),
        (DeadlineExceeded("attempt timed out", timeout=1.0), True, False),
        (TimeoutError(), True, False),
        (ValueError("bug"), False, False),
        (httpx.HTTPStatusError("500", request=_REQUEST, response=httpx.Response(500)), False, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_exception_table(exc: BaseException, retryable: bool, not_sent: bool) -> None:
    assert is_retryable_exception(exc) is retryable
    assert is_breaker_failure_exception(exc) is retryable
    assert request_was_not_sent(exc) is not_sent


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        ("0", 0.0, 0.0),
        ("120", 0.0, 120.0),
        ("  7\t", 0.0, 7.0),
        ("0007", 0.0, 7.0),
        (str(MAX_DELTA_SECONDS), 0.0, float(MAX_DELTA_SECONDS)),
        (str(MAX_DELTA_SECONDS + 1), 0.0, math.inf),  # an overflow is the longest wait (RFC 9111 §1.2.2)
        ("9" * 5000, 0.0, math.inf),  # would exceed int()'s digit limit: overflow, not an exception
        ("-1", 0.0, None),
        ("+5", 0.0, None),
        ("1.5", 0.0, None),
        ("1e3", 0.0, None),
        ("", 0.0, None),
        ("   ", 0.0, None),
        (None, 0.0, None),
        ("soon", 0.0, None),
        ("١٢", 0.0, None),  # Arabic-Indic digits are not DIGIT
        ("²", 0.0, None),
        # HTTP-date, the three formats of RFC 9110 §5.6.7
        ("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE - 30, 30.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE - 30, 30.0),
        ("Sun Nov  6 08:49:37 1994", RFC_EXAMPLE - 30, 30.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE, 0.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE + 1, None),  # past
        ("Sun, 06 Nov 1994 08:49:37 GMT", math.nan, None),
        ("Sun, 06 Nov 1994 08:49:37 GMT", math.inf, None),
        ("Sun, 06 Nov 1994 08:49:37 UTC", RFC_EXAMPLE - 30, None),
        ("Sun, 06 Nov 1994 08:49:37", RFC_EXAMPLE - 30, None),
        ("Sun, 31 Feb 1994 08:49:37 GMT", 0.0, None),
        ("Sun, 00 Nov 1994 08:49:37 GMT", 0.0, None),
        ("Sun, 06 Nov 1994 24:00:00 GMT", 0.0, None),
        ("Sun, 06 Nov 1994 23:60:00 GMT", 0.0, None),
        ("Sun, 06 Nov 1994 23:59:60 GMT", RFC_EXAMPLE, 54623.0),  # leap second
        ("Sun, 06 Nov 0000 08:49:37 GMT", -1e12, None),
        ("Fun, 06 Nov 1994 08:49:37 GMT", 0.0, None),
        ("Sun, 06 Nox 1994 08:49:37 GMT", 0.0, None),
    ],
)
def test_parse_retry_after_table(value: str | None, now: float, expected: float | None) -> None:
    assert parse_retry_after(value, now) == expected


def test_rfc850_two_digit_year_far_future_means_previous_century() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    # 2079 is not more than 50 years after 2030: 79 means 2079.
    assert parse_http_date("Monday, 01-Jan-79 00:00:00 GMT", now) == datetime(2079, 1, 1, tzinfo=UTC).timestamp()
    # 2081 is: 81 means 1981 (a past date, so Retry-After ignores it).
    assert parse_http_date("Thursday, 01-Jan-81 00:00:00 GMT", now) == datetime(1981, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after("Thursday, 01-Jan-81 00:00:00 GMT", now) is None


@given(st.text(max_size=60), st.floats(allow_nan=True, allow_infinity=True))
def test_parse_retry_after_never_raises_and_stays_in_bounds(value: str, now: float) -> None:
    result = parse_retry_after(value, now)
    assert result is None or result == math.inf or 0.0 <= result <= MAX_DELTA_SECONDS


@given(st.integers(min_value=0, max_value=MAX_DELTA_SECONDS))
def test_delta_seconds_round_trip(seconds: int) -> None:
    assert parse_retry_after(str(seconds), 0.0) == float(seconds)


@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC)
    ),
    st.integers(min_value=0, max_value=10**6),
)
def test_http_date_round_trip(when: datetime, ahead: int) -> None:
    value = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    at = when.timestamp()
    assert parse_retry_after(value, at - ahead) == float(ahead)
    asctime = when.strftime("%a %b ") + f"{when.day:2d}" + when.strftime(" %H:%M:%S %Y")
    assert parse_retry_after(asctime, at - ahead) == float(ahead)
    if ahead:
        assert parse_retry_after(value, at + ahead) is None  # past
