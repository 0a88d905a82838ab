"""The outgoing deadline header: the time an attempt may take, sent to the next service when an ambient deadline
exists (Request-Deadline-Ms by default), removed from the caller's request afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER, Harness
from _http_server import respond, scripted_server

from stalwart import DeadlineExceeded, current_deadline, deadline
from stalwart._registry import Registry
from stalwart.asgi import DeadlineMiddleware
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.httpx._wire import DeadlineHeader
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"


def config(**kwargs: Any) -> ResilienceConfig:
    return ResilienceConfig(backoff=NO_JITTER, **kwargs)


@pytest.fixture(params=["async", "sync"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sent(h: Harness, name: str = "request-deadline-ms") -> list[str | None]:
    return [headers.get(name) for headers in h.upstream.headers]


async def test_no_header_without_an_ambient_deadline(mode: str) -> None:
    h = Harness(mode, [503, 200])
    await h.request()
    assert sent(h) == [None, None]


async def test_each_attempt_sends_the_time_left(mode: str) -> None:
    h = Harness(mode, [503, 503, 200])
    with deadline(7.5, clock=h.clock):
        assert (await h.request()).status_code == 200
    # attempt 1 at t=0, attempt 2 after 1 s of backoff, attempt 3 after 2 more.
    assert sent(h) == ["7500", "6500", "4500"]


async def test_the_attempts_own_timeout_is_sent_when_it_is_smaller(mode: str) -> None:
    h = Harness(mode, [200], config=config(timeout=0.25))
    with deadline(3.0, clock=h.clock):
        await h.request()
    assert sent(h) == ["250"]


async def test_the_value_is_rounded_down_to_whole_milliseconds(mode: str) -> None:
    h = Harness(mode, [200])
    with deadline(1.0, clock=h.clock):
        h.clock.advance(0.0004)  # 999.6 ms left: never promise the callee more than there is
        await h.request()
    assert sent(h) == ["999"]


async def test_the_header_name_is_configurable_or_off(mode: str) -> None:
    h = Harness(mode, [200], config=config(deadline_header="X-Budget-Ms"))
    with deadline(2.0, clock=h.clock):
        await h.request()
    assert sent(h, "x-budget-ms") == ["2000"]
    assert sent(h) == [None]
    off = Harness(mode, [200], config=config(deadline_header=None))
    with deadline(2.0, clock=off.clock):
        await off.request()
    assert sent(off) == [None]


async def test_grpc_timeout_is_sent_in_grpcs_format(mode: str) -> None:
    h = Harness(mode, [200], config=config(deadline_header="grpc-timeout"))
    with deadline(3.0, clock=h.clock):
        await h.request()
    assert sent(h, "grpc-timeout") == ["3000000u"]


async def test_the_callers_request_is_left_as_it_was_built(mode: str) -> None:
    h = Harness(mode, [503, 200])
    request = httpx.Request("GET", URL, headers={"Request-Deadline-Ms": "99"})
    with deadline(2.0, clock=h.clock):
        response = await h.send(request)
    assert response.status_code == 200
    assert sent(h) == ["2000", "1000"]  # the caller's own value is replaced for each attempt...
    assert request.headers.get_list("request-deadline-ms") == ["99"]  # ...and restored afterwards
    assert "stalwart-attempt" not in request.headers


async def test_an_expired_deadline_sends_nothing(mode: str) -> None:
    h = Harness(mode, [200])
    with deadline(0.5, clock=h.clock):
        h.clock.advance(0.5)
        with pytest.raises(DeadlineExceeded):
            await h.request()
    assert h.upstream.calls == 0


async def test_a_deadline_reached_during_the_retries_sends_no_late_attempt(mode: str) -> None:
    h = Harness(mode, [503])
    with deadline(1.5, clock=h.clock):
        assert (await h.request()).status_code == 503
    assert sent(h) == ["1500", "500"]  # the next backoff (2 s) would pass the deadline: give up


@pytest.mark.parametrize("raw", [True, False])
def test_stamp_and_unstamp(raw: bool) -> None:
    header = DeadlineHeader("Request-Deadline-Ms", raw=raw)
    request = httpx.Request("GET", URL)
    token = header.stamp(request, 12.3456)
    assert request.headers.get_list("request-deadline-ms") == ["12345"]
    header.unstamp(request, token)
    assert "request-deadline-ms" not in request.headers
    assert DeadlineHeader("GRPC-Timeout").format(0.25) == "250000u"


def test_config_validates_the_header_name() -> None:
    with pytest.raises(ValueError, match="deadline_header"):
        ResilienceConfig(deadline_header="Request Deadline")
    assert ResilienceConfig().deadline_header == "Request-Deadline-Ms"


# --- end to end ---------------------------------------------------------------------------------------------------


async def test_the_next_service_runs_under_the_budget_it_was_sent() -> None:
    seen: list[float | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ambient = current_deadline()
        seen.append(None if ambient is None else ambient.remaining())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    service_clock = FakeClock()
    service = DeadlineMiddleware(app, buffer=0.5, clock=service_clock)
    caller_clock = FakeClock(start=1000.0)  # the two clocks disagree: only the relative budget travels
    transport = AsyncResilientTransport(
        httpx.ASGITransport(app=service), config=config(), registry=Registry(), clock=caller_clock
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with deadline(4.0, clock=caller_clock):
            await client.get("http://service.local/work")
        await client.get("http://service.local/work")
    assert seen == [3.5, None]  # 4 s sent, minus the service's own 0.5 s buffer; no deadline, no header


async def test_a_real_server_sees_the_header(mode: str) -> None:
    clock = FakeClock()
    options: dict[str, Any] = {"config": config(), "registry": Registry(), "clock": clock}
    with scripted_server([respond(503), respond(200)]) as server:
        if mode == "async":
            async with httpx.AsyncClient(transport=AsyncResilientTransport(**options)) as client:
                with deadline(5.0, clock=clock):
                    await client.get(server.url)
        else:
            with httpx.Client(transport=ResilientTransport(**options)) as sync_client:

                def call() -> None:
                    with deadline(5.0, clock=clock):
                        sync_client.get(server.url)

                await asyncio.to_thread(call)
    assert [headers.get("request-deadline-ms") for _, _, _, headers in server.requests] == ["5000", "4000"]
