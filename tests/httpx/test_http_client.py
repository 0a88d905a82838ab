"""ResilientClient: the seed's combined client over AsyncResilientTransport (MockTransport, fake clock)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER, Upstream

from stalwart import CircuitOpenError
from stalwart._breaker import CircuitState
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientClient
from stalwart.testing import FakeClock

BASE = "https://payments.example.com"


def make(
    steps: list[Any], *, config: ResilienceConfig | None = None, **kwargs: Any
) -> tuple[ResilientClient, Upstream, FakeClock, Registry]:
    upstream = Upstream(steps)
    clock = FakeClock()
    registry = Registry()
    client = ResilientClient(
        "payments",
        BASE,
        config or ResilienceConfig(backoff=NO_JITTER),
        transport=httpx.MockTransport(upstream.ahandler),
        registry=registry,
        clock=clock,
        **kwargs,
    )
    return client, upstream, clock, registry


async def test_defaults_are_the_seeds_combined_client() -> None:
    client = ResilientClient("svc", BASE, registry=Registry())
    async with client:
        config = client.transport.config
        assert (config.timeout, config.max_attempts, config.backoff.initial) == (10.0, 3, 1.0)
        assert (config.failure_threshold, config.reset_timeout, config.max_concurrent) == (5, 30.0, 20)
        assert config.read_response is True
        assert client.client.timeout == httpx.Timeout(10.0)
        assert isinstance(client.transport.transport, httpx.AsyncHTTPTransport)
        assert client.breaker is not None
        assert client.breaker.name == "svc:https://payments.example.com:443"
        assert client.bulkhead is not None
        assert client.bulkhead.max_concurrent == 20
        assert repr(client) == "ResilientClient('svc', 'https://payments.example.com')"
    assert client.client.is_closed


async def test_verbs_use_the_base_url_and_one_client() -> None:
    client, upstream, _, _ = make([200])
    async with client:
        for verb in ("get", "head", "options", "post", "put", "patch", "delete"):
            response = await getattr(client, verb)("/charges")
            assert response.status_code == 200
        await client.request("GET", "/x", params={"a": "1"})
    assert [r.method for r in upstream.requests] == ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "GET"]
    assert str(upstream.requests[-1].url) == "https://payments.example.com/x?a=1"


async def test_retries_5xx_but_never_4xx() -> None:
    client, upstream, clock, _ = make([503, 200])
    async with client:
        assert (await client.get("/a")).status_code == 200
    assert clock.sleeps == [1.0]
    client, upstream, clock, _ = make([422, 200])
    async with client:
        assert (await client.get("/a")).status_code == 422
    assert upstream.calls == 1


async def test_post_retried_only_with_idempotency_key() -> None:
    client, upstream, _, _ = make([503, 503, 200])
    async with client:
        assert (await client.post("/charges", json={"amount": 1})).status_code == 503
        assert upstream.calls == 1
        response = await client.post("/charges", json={"amount": 1}, headers={"Idempotency-Key": "abc"})
        assert response.status_code == 200
    assert upstream.calls == 3
    assert upstream.bodies[1] == upstream.bodies[2] == b'{"amount":1}'


async def test_fallback_answers_when_the_call_fails() -> None:
    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        return httpx.Response(200, json={"fallback": type(exc).__name__})

    client, upstream, _, _ = make(
        [500], config=ResilienceConfig(backoff=NO_JITTER, failure_threshold=3), fallback=fallback
    )
    async with client:
        first = await client.get("/balance")
        assert first.json() == {"fallback": "HTTPStatusError"}
        assert upstream.calls == 3
        assert client.breaker is not None
        assert client.breaker.state is CircuitState.OPEN
        second = await client.get("/balance")
        assert second.json() == {"fallback": "CircuitOpenError"}
    assert upstream.calls == 3


async def test_without_fallback_an_open_circuit_raises() -> None:
    client, _, _, _ = make([500], config=ResilienceConfig(backoff=NO_JITTER, max_attempts=1, failure_threshold=1))
    async with client:
        assert (await client.get("/a")).status_code == 500
        with pytest.raises(CircuitOpenError):
            await client.get("/a")


async def test_a_body_dropped_midway_is_retried() -> None:
    class Dropping(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield b"par"
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    upstream = Upstream([httpx.Response(200, stream=Dropping()), 200])
    client = ResilientClient(
        "svc",
        BASE,
        ResilienceConfig(backoff=NO_JITTER),
        transport=httpx.MockTransport(upstream.ahandler),
        registry=Registry(),
        clock=FakeClock(),
    )
    async with client:
        response = await client.get("/a")
    assert response.text == "attempt 2"
    assert upstream.calls == 2


async def test_transport_options_go_to_the_inner_transport() -> None:
    limits = httpx.Limits(max_connections=7)
    client = ResilientClient("svc", BASE, registry=Registry(), limits=limits, http1=True, verify=False)
    async with client:
        pool = client.transport.transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 7
    with pytest.raises(TypeError, match="limits"):
        ResilientClient("svc", BASE, registry=Registry(), limits=limits, transport=httpx.MockTransport(lambda r: None))


async def test_mounted_transports_get_the_same_policy() -> None:
    upstream = Upstream([503, 200])
    client = ResilientClient(
        "svc",
        BASE,
        ResilienceConfig(backoff=NO_JITTER),
        transport=httpx.MockTransport(lambda r: httpx.Response(404)),
        mounts={"https://other.example.com": httpx.MockTransport(upstream.ahandler)},
        registry=Registry(),
        clock=FakeClock(),
    )
    async with client:
        assert (await client.get("https://other.example.com/x")).status_code == 200
        assert (await client.get("/x")).status_code == 404
    assert upstream.calls == 2


async def test_explicit_timeout_and_headers_pass_through() -> None:
    client, upstream, _, _ = make([200], timeout=httpx.Timeout(2.0), headers={"X-Team": "pay"})
    async with client:
        await client.get("/a")
    assert upstream.timeouts[0] == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}
    assert upstream.headers[0]["x-team"] == "pay"


async def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="name"):
        ResilientClient("", BASE)
    with pytest.raises(TypeError, match="config"):
        ResilientClient("svc", BASE, {"timeout": 1})  # type: ignore[arg-type]


async def test_no_base_url_means_no_base_breaker() -> None:
    client = ResilientClient("svc", transport=httpx.MockTransport(lambda r: httpx.Response(200)), registry=Registry())
    async with client:
        assert client.breaker is None
        assert client.bulkhead is None
        assert (await client.get("https://a.example.com/")).status_code == 200
        assert isinstance(client.transport, AsyncResilientTransport)
