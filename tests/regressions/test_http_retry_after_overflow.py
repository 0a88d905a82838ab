"""Regression: the HTTP transport retried *sooner* when a server asked it to wait too long to represent.

What was wrong: ``stalwart.httpx._classify.parse_retry_after`` (and ``parse_delta_seconds``, which also reads the
``rate_limit_reset_header``) returned ``None`` ("ignore the header") for a delta-seconds value above ``10**18``, so
the transport fell back to its computed backoff and retried within a second, while ``Retry-After: 61`` (beyond the
default ``max_retry_after``) gave up at once. The bigger the server's request, the earlier the retry. RFC 9111
§1.2.2 has a recipient treat an overflowing delta-seconds as the largest value it can represent, never ignore it;
now such a value parses as ``math.inf`` and the transport gives up at once with ``retry_after_too_long`` (both
drivers, and the hedged path), returning the server's response.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from stalwart import RetryGaveUp, RetryScheduled, add_hook, remove_hook
from stalwart._backoff import Backoff, Jitter
from stalwart._events import Event
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport, parse_retry_after
from stalwart.httpx._classify import MAX_DELTA_SECONDS, parse_delta_seconds
from stalwart.testing import FakeClock

HUGE = ["1000000000000000001", "99999999999999999999999", "9" * 5000]
URL = "https://api.example.com/items"


@pytest.mark.parametrize("value", HUGE)
def test_an_overflowing_delta_is_the_longest_wait(value: str) -> None:
    assert parse_retry_after(value, 0.0) == math.inf
    assert parse_delta_seconds(value) == math.inf
    assert parse_retry_after(str(MAX_DELTA_SECONDS), 0.0) == float(MAX_DELTA_SECONDS)


def _config(**kwargs: Any) -> ResilienceConfig:
    backoff = Backoff.exponential(initial=1.0, jitter=Jitter.NONE)
    return ResilienceConfig(backoff=backoff, max_retry_after=math.inf, **kwargs)


@pytest.mark.parametrize("mode", ["async", "sync", "hedged"])
@pytest.mark.parametrize(
    ("header", "extra"),
    [("Retry-After", {}), ("RateLimit-Reset", {"rate_limit_reset_header": "RateLimit-Reset"})],
)
async def test_the_transport_gives_up_instead_of_retrying_at_once(mode: str, header: str, extra: Any) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return (
            httpx.Response(503, headers={header: "99999999999999999999999"}) if len(calls) == 1 else httpx.Response(200)
        )

    clock = FakeClock()
    events: list[Event] = []
    add_hook(events.append)
    try:
        if mode == "sync":
            transport: Any = ResilientTransport(
                httpx.MockTransport(handler), config=_config(**extra), registry=Registry(), clock=clock
            )
            with httpx.Client(transport=transport) as client:
                response = client.get(URL)
        else:
            config = _config(hedge=5.0, **extra) if mode == "hedged" else _config(**extra)
            transport = AsyncResilientTransport(
                httpx.MockTransport(handler), config=config, registry=Registry(), clock=clock
            )
            async with httpx.AsyncClient(transport=transport) as client:
                response = await client.get(URL)
    finally:
        remove_hook(events.append)
    assert response.status_code == 503
    assert len(calls) == 1
    assert not any(isinstance(e, RetryScheduled) for e in events)
    if mode != "hedged":  # (the race's hedge timer is a sleep on the clock too)
        assert clock.sleeps == []
    gave_up = [e for e in events if isinstance(e, RetryGaveUp)]
    assert [e.reason for e in gave_up] == ["retry_after_too_long"]
