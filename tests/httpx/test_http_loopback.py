"""The transports against a real HTTP/1.1 server on loopback: 503s, dropped connections, cut bodies, hung
responses, refused connections. Backoff sleeps use a fake clock; only the per-attempt timeout runs on real time."""

from __future__ import annotations

import httpx
import pytest
from _http_harness import NO_JITTER, LoopbackSide
from _http_server import drop, free_port, hang, respond, scripted_server, truncate

from stalwart import CircuitOpenError, DeadlineExceeded, deadline
from stalwart._registry import Registry
from stalwart.httpx import ResilienceConfig, ResilientClient
from stalwart.testing import FakeClock


@pytest.fixture(params=["async", "sync"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_503s_are_retried_over_one_kept_alive_connection(mode: str) -> None:
    with scripted_server([respond(503), respond(503), respond(200)]) as server:
        side = LoopbackSide(mode)
        response = await side.request("GET", server.url + "/items")
        await side.close()
    assert (response.status_code, response.text) == (200, "attempt 3")
    assert server.attempts() == ["1", "2", "3"]
    assert len(server.connections) == 1  # every discarded response was closed and its connection reused
    assert side.clock.sleeps == [1.0, 2.0]


async def test_retry_after_from_a_real_server(mode: str) -> None:
    with scripted_server([respond(503, Retry_After="4"), respond(200)]) as server:
        side = LoopbackSide(mode)
        response = await side.request("GET", server.url)
        await side.close()
    assert response.status_code == 200
    assert side.clock.sleeps == [4.0]


async def test_too_long_retry_after_returns_the_503_at_once(mode: str) -> None:
    with scripted_server([respond(503, Retry_After="3600"), respond(200)]) as server:
        side = LoopbackSide(mode)
        response = await side.request("GET", server.url)
        await side.close()
    assert (response.status_code, response.headers["retry-after"]) == (503, "3600")
    assert server.count == 1


async def test_a_dropped_connection_is_retried_for_get(mode: str) -> None:
    with scripted_server([drop, respond(200)]) as server:
        side = LoopbackSide(mode)
        response = await side.request("GET", server.url)
        await side.close()
    assert (response.status_code, response.text) == (200, "attempt 2")
    assert server.count == 2


async def test_a_dropped_connection_is_not_retried_for_post_without_key(mode: str) -> None:
    with scripted_server([drop, respond(200)]) as server:
        side = LoopbackSide(mode)
        with pytest.raises(httpx.RemoteProtocolError):
            await side.request("POST", server.url, content=b"charge")
        await side.close()
    assert server.count == 1


async def test_a_dropped_connection_is_retried_for_post_with_key_and_the_body_resent(mode: str) -> None:
    with scripted_server([drop, respond(503), respond(201)]) as server:
        side = LoopbackSide(mode)
        response = await side.request(
            "POST", server.url + "/charges", json={"amount": 5}, headers={"Idempotency-Key": "k1"}
        )
        await side.close()
    assert response.status_code == 201
    assert server.bodies() == [b'{"amount":5}'] * 3


async def test_a_refused_connection_is_retried_even_for_post_then_raised(mode: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/charges"
    side = LoopbackSide(mode, config=ResilienceConfig(backoff=NO_JITTER, timeout=5.0, failure_threshold=3))
    with pytest.raises(httpx.ConnectError) as info:
        await side.request("POST", url, content=b"x")
    assert side.clock.sleeps == [1.0, 2.0]
    assert any("gave up after 3 attempts" in note for note in info.value.__notes__)
    with pytest.raises(CircuitOpenError):  # three refused connections opened the breaker
        await side.request("GET", url)
    await side.close()


async def test_the_breaker_trips_on_a_failing_server_and_stops_calling_it(mode: str) -> None:
    config = ResilienceConfig(backoff=NO_JITTER, timeout=5.0, max_attempts=1, failure_threshold=2)
    with scripted_server([respond(500)]) as server:
        side = LoopbackSide(mode, config=config)
        for _ in range(2):
            assert (await side.request("GET", server.url)).status_code == 500
        for _ in range(5):
            with pytest.raises(CircuitOpenError):
                await side.request("GET", server.url)
        await side.close()
    assert server.count == 2


async def test_a_hung_response_hits_the_per_attempt_timeout_and_is_retried() -> None:
    config = ResilienceConfig(backoff=NO_JITTER, timeout=1.0)
    with scripted_server([hang, respond(200)]) as server:
        side = LoopbackSide("async", config=config)
        response = await side.request("GET", server.url)
        await side.close()
    assert (response.status_code, response.text) == (200, "attempt 2")
    assert server.count == 2


async def test_a_hung_response_hits_httpx_clamped_timeout_in_sync_code() -> None:
    config = ResilienceConfig(backoff=NO_JITTER, timeout=1.0)
    with scripted_server([hang, respond(200)]) as server:
        side = LoopbackSide("sync", config=config)
        response = await side.request("GET", server.url)  # httpx's read timeout (5 s) is clamped to 1 s
        await side.close()
    assert response.status_code == 200
    assert server.count == 2


async def test_an_async_deadline_stops_a_hung_call_without_retrying() -> None:
    with scripted_server([hang, respond(200)]) as server:
        side = LoopbackSide("async")
        with pytest.raises(DeadlineExceeded):
            async with deadline(0.3):
                await side.request("GET", server.url)
        await side.close()
    assert server.count == 1


async def test_resilient_client_retries_a_body_cut_in_the_middle() -> None:
    with scripted_server([truncate, respond(200, body=b"complete")]) as server:
        async with ResilientClient(
            "svc", server.url, ResilienceConfig(backoff=NO_JITTER), registry=Registry(), clock=FakeClock()
        ) as client:
            response = await client.get("/report")
    assert response.text == "complete"
    assert server.count == 2


async def test_resilient_client_fallback_on_an_outage() -> None:
    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        return httpx.Response(200, json={"stale": True, "why": type(exc).__name__})

    config = ResilienceConfig(backoff=NO_JITTER, failure_threshold=3)
    with scripted_server([respond(503), drop]) as server:
        async with ResilientClient(
            "svc", server.url, config, fallback=fallback, registry=Registry(), clock=FakeClock()
        ) as client:
            first = await client.get("/balance")
            second = await client.get("/balance")
    assert first.json() == {"stale": True, "why": "RemoteProtocolError"}
    assert second.json() == {"stale": True, "why": "CircuitOpenError"}
    assert server.count == 3
