"""Retry details against a real HTTP/1.1 server on loopback: pushback headers, the attempt header the server sees,
automatic idempotency keys, retry on result. Backoff sleeps use a fake clock."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from _http_harness import NO_JITTER, LoopbackSide
from _http_server import drop, respond, scripted_server

from stalwart.httpx import ResilienceConfig


@pytest.fixture(params=["async", "sync"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def header_values(server: Any, name: str) -> list[str | None]:
    return [headers.get(name) for _, _, _, headers in server.requests]


async def test_the_server_sees_the_attempt_count_on_every_attempt(mode: str) -> None:
    with scripted_server([respond(503), respond(502), respond(200)]) as server:
        side = LoopbackSide(mode)
        response = await side.request("PUT", server.url + "/doc", content=b"v2")
        await side.close()
    assert response.status_code == 200
    assert server.attempts() == ["1", "2", "3"]


async def test_rate_limit_reset_pushback_from_a_real_server(mode: str) -> None:
    with scripted_server([respond(429, RateLimit_Reset="6"), respond(200)]) as server:
        side = LoopbackSide(
            mode, ResilienceConfig(backoff=NO_JITTER, timeout=5.0, rate_limit_reset_header="RateLimit-Reset")
        )
        response = await side.request("GET", server.url)
        await side.close()
    assert response.status_code == 200
    assert side.clock.sleeps == [6.0]


async def test_retry_after_as_an_http_date_against_the_servers_date(mode: str) -> None:
    headers = {"Date": "Wed, 01 May 2030 12:00:00 GMT", "Retry_After": "Wed, 01 May 2030 12:00:03 GMT"}
    with scripted_server([respond(503, **headers), respond(200)]) as server:
        side = LoopbackSide(mode)
        response = await side.request("GET", server.url)
        await side.close()
    assert response.status_code == 200
    assert side.clock.sleeps == [3.0]


async def test_auto_idempotency_key_is_sent_unchanged_on_every_attempt(mode: str) -> None:
    with scripted_server([drop, respond(503), respond(201)]) as server:
        side = LoopbackSide(mode, ResilienceConfig(backoff=NO_JITTER, timeout=5.0, auto_idempotency_key=True))
        response = await side.request("POST", server.url + "/charges", json={"amount": 5})
        second = await side.request("POST", server.url + "/charges", json={"amount": 5})
        await side.close()
    assert (response.status_code, second.status_code) == (201, 201)
    keys = header_values(server, "idempotency-key")
    assert len(keys) == 4
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] != keys[0]
    assert all(key is not None and uuid.UUID(key).version == 4 for key in keys)
    assert server.attempts() == ["1", "2", "3", "1"]
    assert server.bodies() == [b'{"amount":5}'] * 4


async def test_a_post_without_key_that_reached_the_server_is_sent_once(mode: str) -> None:
    with scripted_server([respond(503), respond(201)]) as server:
        side = LoopbackSide(mode)
        response = await side.request("POST", server.url + "/charges", content=b"x")
        await side.close()
    assert response.status_code == 503
    assert server.count == 1


async def test_on_result_retries_a_json_body_saying_try_later(mode: str) -> None:
    later = json.dumps({"status": "try later"}).encode()
    done = json.dumps({"status": "done", "id": 3}).encode()
    with scripted_server([respond(200, body=later), respond(200, body=done)]) as server:
        try_later = ResilienceConfig(
            backoff=NO_JITTER, timeout=5.0, on_result=lambda response: response.json()["status"] == "try later"
        )
        side = LoopbackSide(mode, try_later)
        response = await side.request("GET", server.url + "/jobs/3")
        await side.close()
    assert response.json() == {"status": "done", "id": 3}
    assert server.attempts() == ["1", "2"]
    assert len(server.connections) == 1  # the rejected response was read and its connection reused
