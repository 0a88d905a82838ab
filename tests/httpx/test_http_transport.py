"""AsyncResilientTransport and ResilientTransport over httpx.MockTransport with a fake clock (both flavours)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from _http_harness import NO_JITTER, Harness

import stalwart
from stalwart import CircuitOpenError, DeadlineExceeded, deadline
from stalwart._breaker import CircuitState
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport

pytestmark = pytest.mark.parametrize("mode", ["async", "sync"])

URL = "https://api.example.com/items"


def config(**kwargs: object) -> ResilienceConfig:
    return ResilienceConfig(backoff=NO_JITTER, **kwargs)  # type: ignore[arg-type]


# --- classification -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_status_is_retried(mode: str, status: int) -> None:
    h = Harness(mode, [status, 200])
    response = await h.request()
    assert response.status_code == 200
    assert h.upstream.calls == 2
    assert h.clock.sleeps == [1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
async def test_non_retryable_status_is_returned_as_is(mode: str, status: int) -> None:
    h = Harness(mode, [status, 200])
    response = await h.request()
    assert response.status_code == status
    assert response.text == "attempt 1"
    assert h.upstream.calls == 1
    assert h.clock.sleeps == []


async def test_exhausted_retries_return_the_last_response_unclosed_and_readable(mode: str) -> None:
    h = Harness(mode, [503])
    response = await h.send(httpx.Request("GET", URL))
    assert response.status_code == 503
    assert not response.is_closed
    body = await response.aread() if mode == "async" else response.read()
    assert body == b"attempt 3"
    assert h.upstream.calls == 3
    assert h.clock.sleeps == [1.0, 2.0]


async def test_every_discarded_response_is_closed_before_the_next_attempt(mode: str) -> None:
    h = Harness(mode, [503, 502, 200])
    await h.request()
    assert h.upstream.closed_before_next == [True, True]
    assert h.upstream.responses[0].is_closed
    assert h.upstream.responses[1].is_closed


async def test_attempt_header_on_every_attempt(mode: str) -> None:
    h = Harness(mode, [503, 503, 200])
    await h.request()
    assert h.upstream.attempts == ["1", "2", "3"]


async def test_attempt_header_is_configurable(mode: str) -> None:
    h = Harness(mode, [503, 200], config=config(attempt_header="X-Try"))
    await h.request()
    assert [headers.get("x-try") for headers in h.upstream.headers] == ["1", "2"]
    assert h.upstream.attempts == [None, None]


async def test_post_is_not_retried_without_idempotency_key(mode: str) -> None:
    h = Harness(mode, [503, 200])
    response = await h.request("POST", content=b"pay")
    assert response.status_code == 503
    assert h.upstream.calls == 1


async def test_post_read_error_is_not_retried_without_idempotency_key(mode: str) -> None:
    h = Harness(mode, [httpx.ReadError("reset"), 200])
    with pytest.raises(httpx.ReadError):
        await h.request("POST", content=b"pay")
    assert h.upstream.calls == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_post_and_patch_are_retried_with_idempotency_key(mode: str, method: str) -> None:
    h = Harness(mode, [503, httpx.ReadError("reset"), 200])
    response = await h.request(method, content=b"pay", headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 200
    assert h.upstream.calls == 3
    assert h.upstream.bodies == [b"pay"] * 3


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_nothing_sent_errors_are_retried_for_post(mode: str, error: type[Exception]) -> None:
    h = Harness(mode, [error, 200])
    response = await h.request("POST", content=b"pay")
    assert response.status_code == 200
    assert h.upstream.calls == 2


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError])
async def test_transport_errors_are_retried_for_get(mode: str, error: type[Exception]) -> None:
    h = Harness(mode, [error, 200])
    assert (await h.request()).status_code == 200
    assert h.upstream.calls == 2


async def test_exhausted_retries_raise_the_last_error_with_a_note(mode: str) -> None:
    h = Harness(mode, [httpx.ReadTimeout("slow 1"), httpx.ReadTimeout("slow 2"), httpx.ReadTimeout("slow 3")])
    with pytest.raises(httpx.ReadTimeout, match="slow 3") as info:
        await h.request()
    assert h.upstream.calls == 3
    notes = getattr(info.value, "__notes__", [])
    assert any("gave up after 3 attempts" in note for note in notes)


async def test_a_non_transient_error_is_raised_at_once_untouched(mode: str) -> None:
    h = Harness(mode, [ValueError("bug"), 200])
    with pytest.raises(ValueError, match="bug") as info:
        await h.request()
    assert h.upstream.calls == 1
    assert not getattr(info.value, "__notes__", [])


async def test_max_attempts_one_disables_retries(mode: str) -> None:
    h = Harness(mode, [503, 200], config=config(max_attempts=1))
    assert (await h.request()).status_code == 503
    assert h.upstream.calls == 1


# --- Retry-After --------------------------------------------------------------------------------------------------


async def test_retry_after_delta_seconds_is_honoured(mode: str) -> None:
    h = Harness(mode, [(429, {"Retry-After": "7"}), (503, {"Retry-After": "0"}), 200])
    assert (await h.request()).status_code == 200
    assert h.clock.sleeps == [7.0, 0.0]


async def test_retry_after_http_date_is_read_against_the_response_date(mode: str) -> None:
    now = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)
    headers = {"Date": format_datetime(now, usegmt=True), "Retry-After": "Wed, 01 May 2030 12:00:09 GMT"}
    h = Harness(mode, [(503, headers), 200], wall_clock=lambda: 0.0)  # the local wall clock is way off
    assert (await h.request()).status_code == 200
    assert h.clock.sleeps == [9.0]


async def test_retry_after_http_date_without_date_uses_the_wall_clock(mode: str) -> None:
    now = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    h = Harness(mode, [(503, {"Retry-After": "Wed, 01 May 2030 12:00:04 GMT"}), 200], wall_clock=lambda: now)
    assert (await h.request()).status_code == 200
    assert h.clock.sleeps == [4.0]


@pytest.mark.parametrize("value", ["soon", "-5", "1.5", "Wed, 01 May 1980 12:00:04 GMT", ""])
async def test_malformed_or_past_retry_after_falls_back_to_backoff(mode: str, value: str) -> None:
    h = Harness(mode, [(503, {"Retry-After": value}), 200])
    assert (await h.request()).status_code == 200
    assert h.clock.sleeps == [1.0]


async def test_retry_after_longer_than_max_retry_after_gives_up_at_once(mode: str) -> None:
    h = Harness(mode, [(503, {"Retry-After": "61"}), 200])
    response = await h.request()
    assert response.status_code == 503
    assert h.upstream.calls == 1
    assert h.clock.sleeps == []


async def test_retry_after_longer_than_the_deadline_gives_up_at_once(mode: str) -> None:
    h = Harness(mode, [(503, {"Retry-After": "5"}), 200])
    with deadline(4.0, clock=h.clock):
        response = await h.request()
    assert response.status_code == 503
    assert h.upstream.calls == 1
    assert h.clock.sleeps == []


async def test_retry_after_on_a_non_retryable_request_is_not_honoured(mode: str) -> None:
    h = Harness(mode, [(503, {"Retry-After": "1"}), 200])
    assert (await h.request("POST")).status_code == 503
    assert h.clock.sleeps == []


# --- deadline -----------------------------------------------------------------------------------------------------


async def test_never_sleeps_past_the_deadline(mode: str) -> None:
    h = Harness(mode, [503])
    with deadline(2.5, clock=h.clock):
        response = await h.request()
    # attempt 1 at t=0, sleep 1 s, attempt 2 at t=1; the next delay (2 s) would end at the deadline: give up.
    assert response.status_code == 503
    assert h.upstream.calls == 2
    assert h.clock.sleeps == [1.0]


async def test_deadline_give_up_raises_the_last_error(mode: str) -> None:
    h = Harness(mode, [httpx.ConnectError("refused")])
    with deadline(0.5, clock=h.clock), pytest.raises(httpx.ConnectError) as info:
        await h.request()
    assert h.upstream.calls == 1
    assert any("deadline" in note for note in getattr(info.value, "__notes__", []))


async def test_expired_deadline_raises_without_a_network_call(mode: str) -> None:
    h = Harness(mode, [200])
    with deadline(1.0, clock=h.clock):
        h.clock.advance(1.0)
        with pytest.raises(DeadlineExceeded):
            await h.request()
    assert h.upstream.calls == 0
    breaker = h.breaker()
    assert breaker is None or breaker.statistics().calls == 0


async def test_deadline_clamps_httpx_timeouts(mode: str) -> None:
    h = Harness(mode, [503, 200])
    with deadline(3.0, clock=h.clock):
        await h.request(timeout=httpx.Timeout(5.0, pool=None))
    first, second = h.upstream.timeouts
    assert first == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}
    assert second == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


async def test_without_deadline_httpx_timeouts_within_the_attempt_limit_are_kept(mode: str) -> None:
    h = Harness(mode, [200])
    await h.request(timeout=httpx.Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0))
    assert h.upstream.timeouts == [{"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 4.0}]


# --- bodies -------------------------------------------------------------------------------------------------------


async def test_bodies_are_resent_identically(mode: str) -> None:
    h = Harness(mode, [503, 502, 200])
    await h.request("PUT", json={"amount": 10, "currency": "EUR"})
    assert len(h.upstream.bodies) == 3
    assert h.upstream.bodies[0] == b'{"amount":10,"currency":"EUR"}'
    assert len(set(h.upstream.bodies)) == 1


async def test_streaming_bodies_are_buffered_once_and_resent(mode: str) -> None:
    h = Harness(mode, [503, 200])
    produced: list[bytes] = []

    def chunks() -> object:
        for chunk in (b"al", b"pha"):
            produced.append(chunk)
            yield chunk

    async def achunks() -> AsyncIterator[bytes]:
        for chunk in (b"al", b"pha"):
            produced.append(chunk)
            yield chunk

    content = achunks() if mode == "async" else chunks()
    response = await h.request("PUT", content=content)
    assert response.status_code == 200
    assert h.upstream.bodies == [b"alpha", b"alpha"]
    assert produced == [b"al", b"pha"]  # the stream was consumed once


# --- circuit breaker ----------------------------------------------------------------------------------------------


async def test_breaker_opens_after_failures_and_rejects_without_calling_the_inner_transport(mode: str) -> None:
    h = Harness(mode, [500], config=config(max_attempts=1, failure_threshold=3))
    for _ in range(3):
        assert (await h.request()).status_code == 500
    assert h.breaker().state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        await h.request()
    assert info.value.name == "http:https://api.example.com:443"
    assert info.value.retry_after == pytest.approx(30.0)
    assert h.upstream.calls == 3


async def test_transport_errors_count_as_breaker_failures(mode: str) -> None:
    h = Harness(mode, [httpx.ConnectError("refused")], config=config(max_attempts=1, failure_threshold=2))
    for _ in range(2):
        with pytest.raises(httpx.ConnectError):
            await h.request()
    with pytest.raises(CircuitOpenError):
        await h.request()
    assert h.upstream.calls == 2


@pytest.mark.parametrize("status", [400, 401, 404, 408, 422, 429])
async def test_4xx_never_trip_the_breaker(mode: str, status: int) -> None:
    h = Harness(mode, [status], config=config(max_attempts=1, failure_threshold=2))
    for _ in range(5):
        assert (await h.request()).status_code == status
    assert h.breaker().state is CircuitState.CLOSED
    assert h.upstream.calls == 5


async def test_the_breaker_sees_every_attempt(mode: str) -> None:
    h = Harness(mode, [503, 503, 200], config=config(failure_threshold=5))
    await h.request()
    stats = h.breaker().statistics()
    assert stats.consecutive_failures == 0  # the final success reset the count
    h2 = Harness(mode, [503], config=config(failure_threshold=5))
    await h2.request()
    assert h2.breaker().statistics().consecutive_failures == 3


async def test_a_breaker_opened_by_an_attempt_ends_the_retries_at_once(mode: str) -> None:
    h = Harness(mode, [503], config=config(max_attempts=5, failure_threshold=2))
    response = await h.request()
    assert response.status_code == 503
    assert h.upstream.calls == 2
    assert h.clock.sleeps == [1.0]  # no sleep after the attempt that opened the breaker


async def test_open_breaker_is_probed_after_reset_timeout(mode: str) -> None:
    h = Harness(
        mode,
        [500, 200],
        config=config(max_attempts=1, failure_threshold=1, success_threshold=1, half_open_max_calls=1),
    )
    assert (await h.request()).status_code == 500
    with pytest.raises(CircuitOpenError):
        await h.request()
    h.clock.advance(30.0)
    assert (await h.request()).status_code == 200
    assert h.breaker().state is CircuitState.CLOSED


async def test_per_origin_isolation(mode: str) -> None:
    h = Harness(mode, [500], config=config(max_attempts=1, failure_threshold=2))
    for _ in range(2):
        await h.request(url="https://a.example.com/x")
    with pytest.raises(CircuitOpenError):
        await h.request(url="https://a.example.com/y")
    with pytest.raises(CircuitOpenError):
        await h.request(url="https://a.example.com:443/z")  # same origin, explicit default port
    # Another host, scheme or port is another origin with its own breaker.
    for url in ("https://b.example.com/x", "http://a.example.com/x", "https://a.example.com:8443/x"):
        assert (await h.request(url=url)).status_code == 500
    assert sorted(h.registry.breakers) == [
        "http:http://a.example.com:80",
        "http:https://a.example.com:443",
        "http:https://a.example.com:8443",
        "http:https://b.example.com:443",
    ]
    assert sorted(h.registry.bulkheads) == sorted(h.registry.breakers)


async def test_origin_names_bracket_ipv6_hosts(mode: str) -> None:
    h = Harness(mode, [200])
    await h.request(url="http://[::1]:8080/x")
    assert list(h.registry.breakers) == ["http:http://[::1]:8080"]


async def test_breaker_and_bulkhead_can_be_turned_off(mode: str) -> None:
    h = Harness(mode, [500], config=config(max_attempts=1, failure_threshold=1, use_breaker=False, use_bulkhead=False))
    for _ in range(3):
        assert (await h.request()).status_code == 500
    assert h.registry.breakers == {}
    assert h.registry.bulkheads == {}


# --- bulkhead -----------------------------------------------------------------------------------------------------


async def test_no_bulkhead_slot_is_held_during_a_backoff_sleep(mode: str) -> None:
    h = Harness(mode, [503, 503, 200])
    seen: list[int] = []
    bulkhead_name = "http:https://api.example.com:443"
    sleep, asleep = h.clock.sleep, h.clock.asleep

    def spy_sleep(seconds: float) -> None:
        seen.append(h.registry.get_bulkhead(bulkhead_name).statistics().active)
        sleep(seconds)

    async def spy_asleep(seconds: float) -> None:
        seen.append(h.registry.get_bulkhead(bulkhead_name).statistics().active)
        await asleep(seconds)

    h.clock.sleep = spy_sleep  # type: ignore[method-assign]
    h.clock.asleep = spy_asleep  # type: ignore[method-assign]
    await h.request()
    assert seen == [0, 0]
    assert h.bulkhead().statistics().active == 0


# --- fallback -----------------------------------------------------------------------------------------------------


async def test_fallback_answers_an_open_circuit(mode: str) -> None:
    seen: list[BaseException] = []

    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        seen.append(exc)
        return httpx.Response(200, json={"cached": True})

    h = Harness(mode, [500], config=config(max_attempts=1, failure_threshold=1), fallback=fallback)
    first = await h.request()
    assert first.json() == {"cached": True}
    assert isinstance(seen[0], httpx.HTTPStatusError)
    assert seen[0].response.status_code == 500
    assert h.upstream.responses[0].is_closed
    second = await h.request()
    assert second.json() == {"cached": True}
    assert isinstance(seen[1], CircuitOpenError)
    assert h.upstream.calls == 1


async def test_fallback_answers_exhausted_retries(mode: str) -> None:
    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        return httpx.Response(203, text=f"{request.method} {type(exc).__name__}")

    h = Harness(mode, [httpx.ReadTimeout("slow")], fallback=fallback)
    response = await h.request()
    assert (response.status_code, response.text) == (203, "GET ReadTimeout")
    assert h.upstream.calls == 3


async def test_fallback_leaves_successes_and_4xx_alone(mode: str) -> None:
    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        raise AssertionError("not called")

    h = Harness(mode, [404], fallback=fallback)
    assert (await h.request()).status_code == 404


async def test_fallback_returning_a_non_response_is_a_type_error(mode: str) -> None:
    h = Harness(mode, [500], config=config(max_attempts=1), fallback=lambda request, exc: "nope")
    with pytest.raises(TypeError, match=r"httpx\.Response"):
        await h.request()


# --- construction and lifecycle -----------------------------------------------------------------------------------


async def test_close_is_forwarded_to_the_inner_transport(mode: str) -> None:
    closed: list[str] = []

    class Inner(httpx.BaseTransport, httpx.AsyncBaseTransport):
        def close(self) -> None:
            closed.append("close")

        async def aclose(self) -> None:
            closed.append("aclose")

    h = Harness(mode, inner=Inner())
    if mode == "async":
        await h.client.aclose()
        assert closed == ["aclose"]
    else:
        h.client.close()
        assert closed == ["close"]


async def test_invalid_construction(mode: str) -> None:
    with pytest.raises(TypeError, match="config"):
        Harness(mode, config="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        Harness(mode, name="")


async def test_default_inner_transport_and_registry(mode: str) -> None:
    transport = AsyncResilientTransport() if mode == "async" else ResilientTransport()
    expected = httpx.AsyncHTTPTransport if mode == "async" else httpx.HTTPTransport
    assert isinstance(transport.transport, expected)
    assert transport.registry is stalwart.registry
    assert transport.config == ResilienceConfig()
    if mode == "async":
        await transport.aclose()
    else:
        transport.close()
