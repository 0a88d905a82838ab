"""DeadlineMiddleware: Starlette apps driven through httpx's ASGITransport.

Deadlines are measured on a FakeClock where a test reads them back (exact values, no timing). The tests of the
timer itself use real deadlines of a few tens of milliseconds and assert only on what happened (504, the handler
cancelled or not), never on how long it took.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import stalwart as sw
from stalwart.asgi import DeadlineMiddleware
from stalwart.testing import FakeClock

FOREVER = 60.0


def seen_deadline(clock: FakeClock | None = None) -> dict[str, Any]:
    deadline = sw.current_deadline()
    if deadline is None:
        return {"deadline": None}
    return {"deadline": deadline.at if clock is not None else True, "left": deadline.remaining()}


def client(app: Any, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=DeadlineMiddleware(app, **options)), base_url="http://t")


def echo_app(clock: FakeClock) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(seen_deadline(clock))

    return Starlette(routes=[Route("/", echo)])


# -- the handler's deadline ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "options", "expected_at"),
    [
        ({"Request-Deadline-Ms": "5000"}, {}, 104.5),  # 5 s minus the seed's 0.5 s buffer, from t=100
        ({"request-deadline-ms": "5000"}, {"buffer": 0.0}, 105.0),
        ({"grpc-timeout": "2S"}, {}, 101.5),
        ({"grpc-timeout": "1500m"}, {"buffer": 0.25}, 101.25),
        ({"x-envoy-expected-rq-timeout-ms": "15000"}, {}, 114.5),
        ({"X-Deadline": "1700000003"}, {}, 102.5),  # absolute, against the injected wall clock
        ({"Request-Deadline-Ms": "99999999"}, {}, 159.5),  # clamped to max_timeout (60 s) first
        ({"Request-Deadline-Ms": "99999999"}, {"max_timeout": 10.0}, 109.5),
        ({"Request-Deadline-Ms": "4000", "grpc-timeout": "3S"}, {}, 102.5),  # the tightest wins
        ({}, {"default_timeout": 7.0}, 107.0),  # no header: the server's own default, no buffer
        ({"Request-Deadline-Ms": "soon"}, {"default_timeout": 7.0}, 107.0),  # malformed: as if absent
    ],
)
async def test_the_handler_runs_under_the_callers_deadline_minus_the_buffer(
    headers: dict[str, str], options: dict[str, Any], expected_at: float
) -> None:
    clock = FakeClock(100.0)
    async with client(echo_app(clock), clock=clock, wall_clock=lambda: 1_700_000_000.0, **options) as http:
        response = await http.get("/", headers=headers)
    assert response.status_code == 200
    assert response.json()["deadline"] == expected_at


@pytest.mark.parametrize(
    ("headers", "options"),
    [
        ({}, {}),
        ({"Request-Deadline-Ms": "-5"}, {}),
        ({"grpc-timeout": "5"}, {}),
        ({"X-Deadline": "1700000003"}, {"headers": ["request-deadline-ms"]}),  # not accepted here
    ],
)
async def test_without_a_valid_header_the_handler_has_no_deadline(
    headers: dict[str, str], options: dict[str, Any]
) -> None:
    clock = FakeClock()
    async with client(echo_app(clock), clock=clock, **options) as http:
        response = await http.get("/", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"deadline": None}


async def test_a_tighter_enclosing_deadline_is_kept() -> None:
    clock = FakeClock()
    inner = DeadlineMiddleware(echo_app(clock), clock=clock)

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        with sw.deadline(1.0, clock=clock):
            await inner(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as http:
        response = await http.get("/", headers={"Request-Deadline-Ms": "5000"})
    assert response.json()["deadline"] == 1.0


# -- 504s ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Request-Deadline-Ms": "0"},
        {"grpc-timeout": "0n"},
        {"Request-Deadline-Ms": "500"},  # no more than the 0.5 s buffer
        {"X-Deadline": "1699999999"},  # in the past
    ],
)
async def test_an_already_spent_budget_is_504_and_the_handler_never_runs(headers: dict[str, str]) -> None:
    ran: list[bool] = []

    async def handler(request: Request) -> Response:
        ran.append(True)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", handler)])
    async with client(app, wall_clock=lambda: 1_700_000_000.0) as http:
        response = await http.get("/", headers=headers)
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 504
    assert ran == []


async def test_the_deadline_cancels_the_handler_before_the_response_starts() -> None:
    cancelled = asyncio.Event()

    async def slow(request: Request) -> Response:
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return PlainTextResponse("too late")

    app = Starlette(routes=[Route("/", slow)])
    events: list[sw.Event] = []
    sw.add_hook(events.append)
    try:
        async with client(app, buffer=0.0) as http:
            response = await http.get("/", headers={"Request-Deadline-Ms": "30"})
    finally:
        sw.remove_hook(events.append)
    assert response.status_code == 504
    assert cancelled.is_set()
    assert [e for e in events if isinstance(e, sw.DeadlineExpired)] == [sw.DeadlineExpired(0.03)]


async def test_a_handler_that_swallows_the_cancellation_still_gets_504() -> None:
    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            return  # no response at all

    async with client(stubborn, buffer=0.0) as http:
        response = await http.get("/", headers={"Request-Deadline-Ms": "20"})
    assert response.status_code == 504
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_deadline_exceeded_escaping_the_handler_is_504() -> None:
    async def handler(scope: Any, receive: Any, send: Any) -> None:
        await sw.Timeout(0.01).run(asyncio.sleep, FOREVER)  # a downstream call timing out, not handled

    async with client(handler) as http:
        response = await http.get("/", headers={"Request-Deadline-Ms": "30000"})
    assert response.status_code == 504


async def test_other_errors_propagate() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise ZeroDivisionError

    async with client(broken) as http:
        with pytest.raises(ZeroDivisionError):
            await http.get("/", headers={"Request-Deadline-Ms": "30000"})


async def test_once_the_response_has_started_it_is_left_alone() -> None:
    finished: list[bool] = []

    async def stream() -> AsyncIterator[bytes]:
        yield b"first "
        while (sw.remaining_time() or 0.0) > 0.0:  # wait until the deadline has passed
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # and the middleware's timer has fired
        yield b"second"
        finished.append(True)

    async def handler(request: Request) -> Response:
        return StreamingResponse(stream())

    app = Starlette(routes=[Route("/", handler)])
    async with client(app, buffer=0.0) as http:
        response = await http.get("/", headers={"Request-Deadline-Ms": "30"})
    assert response.status_code == 200
    assert response.text == "first second"
    assert finished == [True]


async def test_an_outside_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await asyncio.sleep(FOREVER)

    middleware = DeadlineMiddleware(slow)
    scope = {"type": "http", "headers": [(b"request-deadline-ms", b"30000")]}
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    task = asyncio.create_task(middleware(scope, receive, send))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent == []


# -- malformed headers and configuration ----------------------------------------------------------------------------


async def test_a_malformed_header_is_logged_once_per_header(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    with caplog.at_level(logging.DEBUG, logger="stalwart"):
        async with client(echo_app(clock), clock=clock) as http:
            for value in ("soon", "later", "-1"):
                response = await http.get("/", headers={"Request-Deadline-Ms": value})
                assert response.status_code == 200
            await http.get("/", headers={"grpc-timeout": "5 seconds"})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(" header")[0] for r in warnings] == [
        "DeadlineMiddleware: ignored a malformed request-deadline-ms",
        "DeadlineMiddleware: ignored a malformed grpc-timeout",
    ]
    assert "soon" not in caplog.text  # the value itself is never logged
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2


@pytest.mark.parametrize(
    ("options", "parameter", "error"),
    [
        ({"buffer": -0.1}, "buffer", ValueError),
        ({"max_timeout": 0}, "max_timeout", ValueError),
        ({"default_timeout": 0}, "default_timeout", ValueError),
        ({"headers": ["x-request-timeout"]}, "headers", ValueError),
        ({"headers": "request-deadline-ms"}, "headers", TypeError),
        ({"headers": [b"grpc-timeout"]}, "headers", TypeError),
        ({"buffer": "0.5"}, "buffer", TypeError),
    ],
)
def test_invalid_configuration(options: dict[str, Any], parameter: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=parameter):
        DeadlineMiddleware(echo_app(FakeClock()), **options)


def test_repr_lists_the_settings() -> None:
    text = repr(DeadlineMiddleware(echo_app(FakeClock()), headers=["GRPC-Timeout"], max_timeout=None))
    assert "max_timeout=None" in text
    assert "['grpc-timeout']" in text


async def test_lifespan_and_websocket_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        assert sw.current_deadline() is None

    middleware = DeadlineMiddleware(app, default_timeout=1.0)
    for kind in ("lifespan", "websocket"):
        await middleware({"type": kind, "headers": [(b"request-deadline-ms", b"100")]}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


# -- background work -----------------------------------------------------------------------------------------------


async def test_work_after_the_response_does_not_inherit_the_deadline() -> None:
    seen: dict[str, Any] = {}

    async def after() -> None:
        seen["background"] = sw.current_deadline()

    async def handler(request: Request) -> Response:
        seen["handler"] = sw.current_deadline()
        return PlainTextResponse("ok", background=BackgroundTask(after))

    app = Starlette(routes=[Route("/", handler)])
    async with client(app) as http:
        response = await http.get("/", headers={"Request-Deadline-Ms": "5000"})
    assert response.status_code == 200
    assert seen["handler"] is not None
    assert seen["background"] is None


async def test_tasks_inherit_the_deadline_unless_started_without_it() -> None:
    seen: dict[str, Any] = {}
    spawned: list[asyncio.Task[None]] = []

    def probe(name: str) -> Callable[[], Any]:
        async def run() -> None:
            seen[name] = sw.current_deadline()

        return run

    async def handler(request: Request) -> Response:
        await asyncio.gather(probe("fan-out")())
        await asyncio.create_task(probe("awaited task")())
        with sw.without_deadline():
            assert sw.current_deadline() is None
            spawned.append(asyncio.create_task(probe("detached")()))
        seen["after"] = sw.current_deadline()
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", handler)])
    async with client(app) as http:
        await http.get("/", headers={"Request-Deadline-Ms": "5000"})
    await asyncio.gather(*spawned)
    assert seen["fan-out"] is not None
    assert seen["awaited task"] is seen["fan-out"]
    assert seen["after"] is seen["fan-out"]
    assert seen["detached"] is None
