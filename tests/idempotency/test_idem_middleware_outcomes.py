"""IdempotencyMiddleware: outcome table (spec §2.9), exceptions, streaming capture, disconnects (§2.10, §2.13)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from idem_apps import Probe, client, headers, inside, make_app, wrap
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from stalwart.idempotency import IdempotencyConfig, MemoryStore, Outcome, State

PAYLOAD = {"amount": 100}


def status_handler(status: int) -> Any:
    async def handler(request: Request) -> Response:
        return JSONResponse({"status": status}, status_code=status)

    return handler


async def run_twice(mw: Any, probe: Probe) -> tuple[Any, Any]:
    async with client(mw, raise_app_exceptions=False) as c:
        first = await c.post("/payments", json=PAYLOAD, headers=headers())
        second = await c.post("/payments", json=PAYLOAD, headers=headers())
    return first, second


@pytest.mark.parametrize(
    ("status", "stored"),
    [
        (200, True),
        (201, True),
        (302, True),
        (400, True),
        (402, True),
        (404, True),
        (409, True),
        (422, True),
        (401, False),
        (403, False),
        (408, False),
        (425, False),
        (429, False),
        (503, False),
        (500, True),
        (502, True),
        (504, True),
    ],
)
async def test_outcome_table(status: int, stored: bool) -> None:
    probe = Probe()
    first, second = await run_twice(wrap(make_app(probe, status_handler(status))), probe)
    assert first.status_code == second.status_code == status
    if stored:
        assert probe.calls == 1
        assert second.headers["idempotent-replayed"] == "true"
        assert second.content == first.content
    else:
        assert probe.calls == 2
        assert "idempotent-replayed" not in second.headers


async def test_store_5xx_false_releases_server_errors() -> None:
    probe = Probe()
    await run_twice(wrap(make_app(probe, status_handler(500)), config=IdempotencyConfig(store_5xx=False)), probe)
    assert probe.calls == 2


async def test_release_statuses_are_configurable() -> None:
    probe = Probe()
    config = IdempotencyConfig(release_statuses=frozenset({409}))
    await run_twice(wrap(make_app(probe, status_handler(409)), config=config), probe)
    assert probe.calls == 2
    probe = Probe()
    await run_twice(wrap(make_app(probe, status_handler(429)), config=config), probe)
    assert probe.calls == 1


async def failing(request: Request) -> Response:
    raise ValueError("boom")


async def test_unhandled_exception_stores_a_synthetic_500_and_re_raises() -> None:
    probe = Probe()
    store = MemoryStore()
    mw = inside(make_app(probe, failing), store)
    with pytest.raises(ValueError, match="boom"):  # re-raised so error reporting still sees it
        async with client(mw) as c:
            await c.post("/payments", json=PAYLOAD, headers=headers())
    async with client(mw, raise_app_exceptions=False) as c:
        replay = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert probe.calls == 1
    assert replay.status_code == 500
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["type"].endswith("/idempotency-handler-error")
    (record,) = store._records.values()
    assert record.outcome is Outcome.EXCEPTION


async def test_first_client_gets_the_synthetic_500() -> None:
    probe = Probe()
    async with client(inside(make_app(probe, failing)), raise_app_exceptions=False) as c:
        first = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert first.status_code == 500
    assert first.json()["type"].endswith("/idempotency-handler-error")


class Retryable(Exception):
    pass


async def test_release_on_exception_and_retryable_exception_types() -> None:
    probe = Probe()
    await run_twice(inside(make_app(probe, failing), config=IdempotencyConfig(release_on_exception=True)), probe)
    assert probe.calls == 2

    async def retryable(request: Request) -> Response:
        raise Retryable

    probe = Probe()
    await run_twice(
        inside(make_app(probe, retryable), config=IdempotencyConfig(retryable_exceptions=(Retryable,))), probe
    )
    assert probe.calls == 2


async def test_handler_release_helper() -> None:
    async def release(request: Request) -> Response:
        request.state.idempotency.release()
        return PlainTextResponse("try again later", status_code=200)

    probe = Probe()
    await run_twice(wrap(make_app(probe, release)), probe)
    assert probe.calls == 2


async def test_exception_after_the_response_started_stores_it_as_omitted() -> None:
    async def broken_stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"partial"
            raise ValueError("mid-stream")

        return StreamingResponse(chunks())

    probe = Probe()
    store = MemoryStore()
    mw = wrap(make_app(probe, broken_stream), store)
    async with client(mw, raise_app_exceptions=False) as c:
        await c.post("/payments", json=PAYLOAD, headers=headers())
        replay = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert probe.calls == 1
    assert replay.status_code == 200
    assert replay.content == b""
    assert replay.headers["idempotency-body-omitted"] == "true"
    (record,) = store._records.values()
    assert (record.outcome, record.body_omitted) == (Outcome.EXCEPTION, True)


async def test_streaming_is_teed_and_replayed_byte_for_byte() -> None:
    probe = Probe()
    mw = wrap(make_app(probe))
    async with client(mw) as c:
        first = await c.post("/stream", headers=headers())
        second = await c.post("/stream", headers=headers())
    assert first.content == b"chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "transfer-encoding" not in second.headers
    assert second.headers["content-length"] == str(len(first.content))
    assert probe.calls == 1


async def test_large_bodies_are_delivered_but_stored_as_omitted() -> None:
    probe = Probe()
    mw = wrap(make_app(probe), config=IdempotencyConfig(max_stored_body=10))
    async with client(mw) as c:
        first = await c.post("/stream", headers=headers())
        second = await c.post("/stream", headers=headers())
    assert len(first.content) == 40  # the first client gets the whole stream
    assert second.status_code == 200
    assert second.content == b""
    assert second.headers["idempotency-body-omitted"] == "true"
    assert second.headers["content-type"].startswith("text/plain")
    assert probe.calls == 1  # never re-executed


async def test_event_streams_log_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def sse(request: Request) -> Response:
        return PlainTextResponse("data: x\n\n", media_type="text/event-stream")

    with caplog.at_level("WARNING", logger="stalwart"):
        async with client(wrap(make_app(Probe(), sse))) as c:
            await c.post("/payments", json=PAYLOAD, headers=headers())
    assert "text/event-stream" in caplog.text


async def raw_call(mw: Any, send_error: BaseException | None = None) -> list[dict[str, Any]]:
    """Drive the middleware with a client that disappears: ``send`` raises after the response starts."""
    messages: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/stream",
        "raw_path": b"/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-user", b"alice"), (b"idempotency-key", b"k-1")],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if send_error is not None and message["type"] == "http.response.body":
            raise send_error

    await mw(scope, receive, send)
    return messages


class ClientDisconnected(OSError):
    pass


async def test_a_vanished_client_does_not_stop_the_handler_and_the_retry_replays() -> None:
    probe = Probe()
    store = MemoryStore()
    mw = wrap(make_app(probe), store)
    messages = await raw_call(mw, ClientDisconnected("gone"))
    body_messages = [m for m in messages if m["type"] == "http.response.body"]
    assert len(body_messages) == 1  # forwarding stopped after the first failure
    (record,) = store._records.values()
    assert record.state is State.COMPLETED
    assert record.body == b"chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"
    async with client(mw) as c:
        replay = await c.post("/stream", headers=headers())
    assert replay.content == record.body
    assert probe.calls == 1


async def test_other_send_errors_are_not_swallowed() -> None:
    mw = wrap(make_app(Probe()))
    with pytest.raises(RuntimeError, match="protocol"):
        await raw_call(mw, RuntimeError("protocol error"))


async def test_shield_disconnect_hides_the_disconnect_from_the_app() -> None:
    seen: list[bool] = []

    async def check(request: Request) -> Response:
        await request.body()
        seen.append(await request.is_disconnected())
        return PlainTextResponse("ok")

    for shield in (True, False):
        seen.clear()
        app = make_app(Probe(), check)
        mw = wrap(app, config=IdempotencyConfig(shield_disconnect=shield))
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/payments",
            "raw_path": b"/payments",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"x-user", b"alice"), (b"idempotency-key", b"k-1")],
        }
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            pass

        await mw(scope, receive, send)
        assert seen == [not shield]


async def test_app_returning_without_a_response_is_stored_as_an_exception() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    store = MemoryStore()
    mw = wrap(app, store)
    async with client(mw, raise_app_exceptions=False) as c:
        first = await c.post("/x", headers=headers())
        second = await c.post("/x", headers=headers())
    assert first.status_code == second.status_code == 500
    assert second.headers["idempotent-replayed"] == "true"


async def test_pathsend_and_zerocopy_extensions_are_hidden_from_the_app() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope.get("extensions", {})))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = wrap(app)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "headers": [(b"x-user", b"a"), (b"idempotency-key", b"k")],
        "extensions": {"http.response.pathsend": {}, "http.response.zerocopy": {}, "other": {}},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    await mw(scope, receive, send)
    assert seen == [{"other": {}}]
    await asyncio.sleep(0)
