"""What may be sent again (methods, Idempotency-Key, automatic keys), retry on result, and RateLimit-Reset pushback,
over httpx.MockTransport with a fake clock (both flavours)."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER, Harness

from stalwart.httpx import ResilienceConfig
from stalwart.httpx._classify import parse_delta_seconds

URL = "https://api.example.com/items"


def config(**kwargs: Any) -> ResilienceConfig:
    return ResilienceConfig(backoff=NO_JITTER, **kwargs)


@pytest.fixture(params=["async", "sync"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- what may be sent again ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.ReadError, httpx.WriteError, httpx.WriteTimeout, httpx.RemoteProtocolError]
)
async def test_post_and_patch_without_key_are_not_resent_once_they_may_have_arrived(
    mode: str, method: str, error: type[Exception]
) -> None:
    h = Harness(mode, [error("gone"), 200])
    with pytest.raises(error):
        await h.request(method, content=b"charge")
    assert h.upstream.calls == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_a_connection_that_failed_before_sending_is_retried_for_any_method(
    mode: str, method: str, error: type[Exception]
) -> None:
    h = Harness(mode, [error("no connection"), error("no connection"), 201])
    assert (await h.request(method, content=b"charge")).status_code == 201
    assert h.upstream.calls == 3
    assert h.upstream.attempts == ["1", "2", "3"]


async def test_a_post_cut_by_its_per_attempt_timeout_is_not_resent() -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    h = Harness("async", inner=httpx.MockTransport(hang), config=config(timeout=0.02))
    with pytest.raises(TimeoutError):
        await h.request("POST", content=b"charge")
    assert h.clock.sleeps == []


# --- automatic idempotency keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_auto_key_is_one_uuid4_reused_on_every_attempt(mode: str, method: str) -> None:
    h = Harness(mode, [503, httpx.ReadError("reset"), 201], config=config(auto_idempotency_key=True))
    response = await h.request(method, content=b"charge")
    assert response.status_code == 201
    keys = [headers.get("idempotency-key") for headers in h.upstream.headers]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    key = keys[0]
    assert key is not None
    assert uuid.UUID(key).version == 4
    assert str(uuid.UUID(key)) == key  # a bare token: no prefix, no quotes
    assert h.upstream.bodies == [b"charge"] * 3


async def test_auto_keys_differ_between_requests(mode: str) -> None:
    h = Harness(mode, [201], config=config(auto_idempotency_key=True))
    await h.request("POST", content=b"a")
    await h.request("POST", content=b"a")
    first, second = (headers["idempotency-key"] for headers in h.upstream.headers)
    assert first != second


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"])
async def test_auto_key_leaves_idempotent_methods_alone(mode: str, method: str) -> None:
    h = Harness(mode, [200], config=config(auto_idempotency_key=True))
    await h.request(method)
    assert "idempotency-key" not in h.upstream.headers[0]


async def test_auto_key_keeps_the_callers_key(mode: str) -> None:
    h = Harness(mode, [503, 201], config=config(auto_idempotency_key=True))
    await h.request("POST", content=b"x", headers={"Idempotency-Key": "order-17"})
    assert [headers["idempotency-key"] for headers in h.upstream.headers] == ["order-17", "order-17"]


async def test_auto_key_uses_the_configured_header(mode: str) -> None:
    h = Harness(mode, [503, 201], config=config(auto_idempotency_key=True, idempotency_header="X-Request-Key"))
    await h.request("POST", content=b"x")
    keys = [headers.get("x-request-key") for headers in h.upstream.headers]
    assert keys[0] is not None
    assert keys == [keys[0]] * 2
    assert "idempotency-key" not in h.upstream.headers[0]


async def test_without_auto_key_a_post_gets_no_key(mode: str) -> None:
    h = Harness(mode, [503, 201])
    assert (await h.request("POST", content=b"x")).status_code == 503
    assert "idempotency-key" not in h.upstream.headers[0]


def test_auto_key_needs_an_idempotency_header() -> None:
    with pytest.raises(ValueError, match="auto_idempotency_key"):
        ResilienceConfig(auto_idempotency_key=True, idempotency_header=None)
    with pytest.raises(TypeError, match="auto_idempotency_key"):
        ResilienceConfig(auto_idempotency_key="yes")  # type: ignore[arg-type]


# --- retry on result ----------------------------------------------------------------------------------------------


def try_later(response: httpx.Response) -> bool:
    return bool(response.json().get("status") == "try later")


def json_response(body: dict[str, Any], status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


async def test_on_result_retries_a_response_the_predicate_rejects(mode: str) -> None:
    h = Harness(
        mode,
        [json_response({"status": "try later"}), json_response({"status": "try later"}), json_response({"id": 7})],
        config=config(on_result=try_later),
    )
    response = await h.request()
    assert response.json() == {"id": 7}
    assert h.upstream.calls == 3
    assert h.clock.sleeps == [1.0, 2.0]


async def test_on_result_reads_a_streamed_body_before_asking(mode: str) -> None:
    seen: list[bytes] = []

    def predicate(response: httpx.Response) -> bool:
        seen.append(response.content)  # raises ResponseNotRead unless the transport read it
        return False

    h = Harness(mode, [200], config=config(on_result=predicate))
    response = await h.send(httpx.Request("GET", URL))
    assert seen == [b"attempt 1"]
    assert response.content == b"attempt 1"


async def test_on_result_give_up_returns_the_last_rejected_response(mode: str) -> None:
    h = Harness(mode, [json_response({"status": "try later"})], config=config(on_result=try_later))
    response = await h.request()
    assert (response.status_code, response.json()) == (200, {"status": "try later"})
    assert h.upstream.calls == 3


async def test_on_result_honours_pushback_on_the_rejected_response(mode: str) -> None:
    later = httpx.Response(200, json={"status": "try later"}, headers={"Retry-After": "4"})
    h = Harness(mode, [later, json_response({"id": 1})], config=config(on_result=try_later))
    assert (await h.request()).json() == {"id": 1}
    assert h.clock.sleeps == [4.0]


async def test_on_result_does_not_resend_a_post_without_key(mode: str) -> None:
    h = Harness(mode, [json_response({"status": "try later"}), 201], config=config(on_result=try_later))
    response = await h.request("POST", content=b"x")
    assert response.json() == {"status": "try later"}
    assert h.upstream.calls == 1


async def test_on_result_is_asked_only_about_statuses_not_already_retried(mode: str) -> None:
    asked: list[int] = []

    def predicate(response: httpx.Response) -> bool:
        asked.append(response.status_code)
        return response.status_code == 404

    h = Harness(mode, [503, 404, 200], config=config(on_result=predicate))
    assert (await h.request()).status_code == 200
    assert asked == [404, 200]
    assert h.upstream.calls == 3


async def test_on_result_rejections_are_not_breaker_failures(mode: str) -> None:
    h = Harness(
        mode,
        [json_response({"status": "try later"})],
        config=config(on_result=try_later, failure_threshold=1, success_threshold=1, half_open_max_calls=1),
    )
    await h.request()
    assert h.upstream.calls == 3  # the breaker saw three successes: it stayed closed
    assert h.breaker().statistics().failure_count == 0


async def test_an_exception_in_on_result_propagates(mode: str) -> None:
    def broken(response: httpx.Response) -> bool:
        raise KeyError("status")

    h = Harness(mode, [200], config=config(on_result=broken))
    with pytest.raises(KeyError, match="status"):
        await h.request()
    assert h.upstream.calls == 1
    stats = h.bulkhead().statistics()
    assert (stats.active, stats.queued) == (0, 0)


def test_on_result_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_result"):
        ResilienceConfig(on_result="try later")  # type: ignore[arg-type]


# --- RateLimit-Reset ----------------------------------------------------------------------------------------------

RESET = config(rate_limit_reset_header="RateLimit-Reset")


async def test_rate_limit_reset_is_pushback_when_configured(mode: str) -> None:
    h = Harness(mode, [(429, {"RateLimit-Reset": "5"}), 200], config=RESET)
    assert (await h.request()).status_code == 200
    assert h.clock.sleeps == [5.0]


async def test_rate_limit_reset_is_ignored_unless_configured(mode: str) -> None:
    h = Harness(mode, [(429, {"RateLimit-Reset": "5"}), 200])
    assert (await h.request()).status_code == 200
    assert h.clock.sleeps == [1.0]


async def test_retry_after_wins_over_rate_limit_reset(mode: str) -> None:
    headers = {"Retry-After": "2", "RateLimit-Reset": "9"}
    h = Harness(mode, [(503, headers), 200], config=RESET)
    await h.request()
    assert h.clock.sleeps == [2.0]


async def test_rate_limit_reset_is_used_when_retry_after_is_invalid(mode: str) -> None:
    headers = {"Retry-After": "soon", "RateLimit-Reset": "3"}
    h = Harness(mode, [(503, headers), 200], config=RESET)
    await h.request()
    assert h.clock.sleeps == [3.0]


@pytest.mark.parametrize("value", ["-1", "1.5", "soon", ""])
async def test_an_invalid_rate_limit_reset_falls_back_to_backoff(mode: str, value: str) -> None:
    h = Harness(mode, [(429, {"RateLimit-Reset": value}), 200], config=RESET)
    await h.request()
    assert h.clock.sleeps == [1.0]


@pytest.mark.parametrize("value", ["120", "1700000000000000000000"])  # an overflow is the longest wait
async def test_a_rate_limit_reset_beyond_max_retry_after_gives_up(mode: str, value: str) -> None:
    h = Harness(mode, [(429, {"RateLimit-Reset": value}), 200], config=RESET)
    assert (await h.request()).status_code == 429
    assert h.upstream.calls == 1


def test_rate_limit_reset_header_must_be_a_header_name() -> None:
    with pytest.raises(ValueError, match="rate_limit_reset_header"):
        ResilienceConfig(rate_limit_reset_header="Rate Limit")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("5", 5.0),
        (" 30\t", 30.0),
        ("007", 7.0),
        ("1000000000000000000", 1e18),
        ("1000000000000000001", math.inf),  # an overflow: the largest value (RFC 9111 §1.2.2)
        ("99999999999999999999999", math.inf),
        ("-1", None),
        ("+1", None),
        ("1.5", None),
        ("1e3", None),
        ("", None),
        ("٣", None),  # a non-ASCII digit
        (None, None),
    ],
)
def test_parse_delta_seconds(value: str | None, expected: float | None) -> None:
    assert parse_delta_seconds(value) == expected
