"""Regression: a response's ``Date`` header in the obsolete RFC 850 form was read in the wrong century.

What was wrong: to measure an HTTP-date ``Retry-After`` against the server's clock, the transports read the
response's ``Date`` header with ``parse_http_date(date, 0.0)``: "now" was the epoch. An RFC 850 date has a
two-digit year, which RFC 9110 §5.6.7 resolves against the current time (not more than 50 years ahead), so against
1970 ``Monday, 30-Nov-26 02:06:16 GMT`` was 1926: a ``Retry-After`` five seconds after that ``Date`` read as a
hundred years, beyond ``max_retry_after``, and the request gave up after one attempt (``retry_after_too_long``)
instead of waiting five seconds. Recipients must accept all three date forms, so a valid ``Date`` ended retries.

The rule now: every HTTP-date is resolved against the transport's wall clock (``wall_clock``); the ``Date``
header, once read, is "now" for the ``Retry-After`` value.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

import httpx
import pytest

from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"
SERVER_NOW = calendar.timegm((2026, 11, 30, 2, 6, 16))  # the server's clock: the response's Date
LOCAL_NOW = SERVER_NOW + 3.0  # this host's wall clock, a little ahead (the Date header is what counts)

RFC850 = "Monday, 30-Nov-26 02:06:16 GMT"
IMF = "Mon, 30 Nov 2026 02:06:16 GMT"
ASCTIME = "Mon Nov 30 02:06:16 2026"
RETRY_AT_IMF = "Mon, 30 Nov 2026 02:06:21 GMT"  # five seconds after the Date
RETRY_AT_RFC850 = "Monday, 30-Nov-26 02:06:21 GMT"


def _date(value: str) -> float:
    return datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("date", [RFC850, IMF, ASCTIME])
@pytest.mark.parametrize("retry_at", [RETRY_AT_IMF, RETRY_AT_RFC850])
@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_retry_after_date_is_measured_against_the_date_header_in_any_form(
    date: str, retry_at: str, mode: str
) -> None:
    assert _date(IMF) == SERVER_NOW
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503, headers={"Retry-After": retry_at, "Date": date})
        return httpx.Response(200)

    clock = FakeClock()
    options = {"registry": Registry(), "clock": clock, "wall_clock": lambda: LOCAL_NOW, "config": ResilienceConfig()}
    if mode == "async":
        transport = AsyncResilientTransport(httpx.MockTransport(handler), **options)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(URL)
    else:
        sync = ResilientTransport(httpx.MockTransport(handler), **options)  # type: ignore[arg-type]
        with httpx.Client(transport=sync) as client:
            response = client.get(URL)
    assert response.status_code == 200
    assert len(calls) == 2
    assert clock.sleeps == [5.0]  # the server's five seconds, on its own clock (not this host's 2)
