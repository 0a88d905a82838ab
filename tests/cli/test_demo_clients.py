"""The demo's two clients against the fault upstream (in-process, over httpx's ASGITransport)."""

from __future__ import annotations

import httpx
import pytest

from stalwart._registry import Registry
from stalwart.cli.demo._clients import (
    FALLBACK_HEADER,
    CountingTransport,
    classify,
    demo_config,
    fallback,
    plain_client,
    resilient_client,
    sender,
)
from stalwart.cli.demo._schedule import FaultSchedule
from stalwart.cli.demo._summary import retries_from_attempts
from stalwart.cli.demo._upstream import FaultUpstream
from stalwart.testing import FakeClock

BASE = "http://upstream"


def _upstream_at(elapsed: float) -> tuple[FaultUpstream, FakeClock]:
    clock = FakeClock(100.0)
    upstream = FaultUpstream(FaultSchedule.outage(20.0), seed=5, clock=clock)
    upstream.start(100.0 - elapsed)
    return upstream, clock


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(200), "ok"),
        (httpx.Response(204), "ok"),
        (httpx.Response(503), "failed"),
        (httpx.Response(404), "failed"),
        (httpx.Response(200, headers={FALLBACK_HEADER: "CircuitOpenError"}), "fallback"),
    ],
)
def test_classify(response: httpx.Response, kind: str) -> None:
    assert classify(response) == kind


def test_fallback_answers_200_marked_with_the_error_type() -> None:
    request = httpx.Request("GET", f"{BASE}/r/1")
    response = fallback(request, TimeoutError())
    assert response.status_code == 200
    assert response.headers[FALLBACK_HEADER] == "TimeoutError"
    assert classify(response) == "fallback"


async def test_counting_transport_counts_per_path_and_closes_inner() -> None:
    closed = False

    class Inner(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

        async def aclose(self) -> None:
            nonlocal closed
            closed = True

    counter = CountingTransport(Inner())
    async with httpx.AsyncClient(transport=counter, base_url=BASE) as client:
        for path in ("/r/1", "/r/1", "/r/2"):
            await client.get(path)
    assert counter.attempts == {"/r/1": 2, "/r/2": 1}
    assert closed


async def test_an_http_error_is_failed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client, _ = plain_client(BASE, 1, inner=httpx.MockTransport(refuse))
    async with client:
        assert await sender(client)(1) == "failed"


@pytest.mark.parametrize(("elapsed", "kind"), [(1.0, "ok"), (4.5, "failed"), (17.0, "ok")])
async def test_plain_side_sends_once(elapsed: float, kind: str) -> None:
    upstream, _ = _upstream_at(elapsed)
    client, counter = plain_client(BASE, 5, inner=httpx.ASGITransport(app=upstream))
    async with client:
        assert await sender(client)(3) == kind
    assert counter.attempts == {"/r/3": 1}


async def test_resilient_side_retries_then_falls_back_during_the_blip() -> None:
    upstream, clock = _upstream_at(4.2)
    client, counter = resilient_client(
        BASE,
        5,
        config=demo_config(5),
        registry=Registry(),
        seed=1,
        inner=httpx.ASGITransport(app=upstream),
        clock=clock,
    )
    async with client:
        assert await sender(client)(3) == "fallback"
        assert await sender(client)(4) == "fallback"
    assert counter.attempts == {"/r/3": 3, "/r/4": 3}
    assert retries_from_attempts(counter.attempts) == 4
    assert len(clock.sleeps) == 4  # backoff waits, on the fake clock
    assert all(0.0 <= delay <= 0.1 for delay in clock.sleeps)
    assert upstream.calls == {"blip": 6}


async def test_resilient_side_passes_healthy_answers_through() -> None:
    upstream, clock = _upstream_at(1.0)
    client, counter = resilient_client(
        BASE,
        5,
        config=demo_config(5),
        registry=Registry(),
        seed=1,
        inner=httpx.ASGITransport(app=upstream),
        clock=clock,
    )
    async with client:
        assert await sender(client)(3) == "ok"
    assert counter.attempts == {"/r/3": 1}


@pytest.mark.parametrize(("concurrency", "slots"), [(1, 1), (10, 10), (50, 10)])
def test_demo_config_is_valid_and_small(concurrency: int, slots: int) -> None:
    config = demo_config(concurrency)
    assert config.reset_timeout == 1.0
    assert config.timeout == 0.25
    assert config.max_concurrent == slots
