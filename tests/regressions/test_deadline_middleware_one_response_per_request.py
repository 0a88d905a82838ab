"""Regression: DeadlineMiddleware answered a request twice, or not at all, at the request's deadline.

What was wrong, two faults of one kind (the middleware's answer at the deadline did not match the response state):

* **A second response.** The timer fires only before the response starts, and the middleware then answered 504 for
  its own cancellation without looking again: a handler that starts a response while it is being cancelled (an error
  page from an ``except CancelledError`` block, a framework's cancellation handler) and lets the cancellation go on
  got a second ``http.response.start`` (504) after its own. Servers refuse that (uvicorn: "Unexpected ASGI message
  'http.response.start' sent, after response already started") and the connection is dropped. Issue 6 / docs: once
  the response has started it is left alone.
* **500 for a fan-out.** ``DeadlineExceeded`` escaping before the response started was answered 504 only when bare.
  A handler fanning out with a ``TaskGroup`` (docs/deadlines.md recommends it: the children inherit the request's
  deadline) gets its children's ``DeadlineExceeded`` wrapped in an ``ExceptionGroup`` when their per-call timeouts,
  clamped to the request's deadline, expire: it escaped the middleware and the server answered 500 for what is the
  request's deadline passing. A group holding only deadline errors is now a 504; any other group still propagates.

Peer reports: litestar PR #3479 ("prevent starting multiple responses": an exception handler starting a response
after one had started), osparc-simcore PR #9297 (a cancellation middleware tracking whether the response started
before answering); asyncio's TaskGroup wraps child errors in an ExceptionGroup (PEP 654).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import stalwart as sw
from stalwart.asgi import DeadlineMiddleware

FOREVER = 60.0


async def drive(app: Any, deadline_ms: bytes, *, buffer: float = 0.0) -> tuple[list[Any], BaseException | None]:
    """Run one request through the middleware with a raw ``send`` that records every message."""
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"request-deadline-ms", deadline_ms)]}
    try:
        await DeadlineMiddleware(app, buffer=buffer)(scope, receive, send)
    except BaseException as exc:  # the test reports what escaped
        return sent, exc
    return sent, None


def starts(sent: list[Any]) -> list[int]:
    return [message["status"] for message in sent if message["type"] == "http.response.start"]


# -- a response started while the handler was being cancelled ------------------------------------------------------


@pytest.mark.parametrize("more_body", [False, True])
async def test_a_response_started_during_the_cancellation_is_not_followed_by_a_504(more_body: bool) -> None:
    async def handler(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(FOREVER)  # cancelled by the middleware's timer
        except asyncio.CancelledError:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"cancelled", "more_body": more_body})
            raise

    sent, escaped = await drive(handler, b"20")
    assert starts(sent) == [503]  # the app's response only: no second http.response.start
    assert escaped is None  # the middleware's own cancellation does not escape it
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_response_started_during_the_cancellation_through_a_real_server_stack() -> None:
    async def handler(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-length", b"1")]})
            await send({"type": "http.response.body", "body": b"x"})
            raise

    transport = httpx.ASGITransport(app=DeadlineMiddleware(handler, buffer=0.0))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/", headers={"Request-Deadline-Ms": "20"})
    assert response.status_code == 503
    assert response.text == "x"


async def test_an_outside_cancellation_while_the_handler_answers_still_propagates() -> None:
    started = asyncio.Event()

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        try:
            started.set()
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            raise

    task = asyncio.create_task(drive(handler, b"30000"))
    await started.wait()
    task.cancel()
    sent, escaped = await task
    assert isinstance(escaped, asyncio.CancelledError)
    assert starts(sent) == [503]


# -- deadline errors of a fan-out ------------------------------------------------------------------------------------


async def test_a_task_group_of_deadline_errors_is_504() -> None:
    async def child() -> None:
        raise sw.DeadlineExceeded("downstream call timed out", timeout=0.1)

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(child())
            group.create_task(child())

    sent, escaped = await drive(handler, b"30000")
    assert escaped is None
    assert starts(sent) == [504]


async def test_a_fan_out_reaching_the_requests_deadline_is_504() -> None:
    async def handler(scope: Any, receive: Any, send: Any) -> None:
        async with asyncio.TaskGroup() as group:  # each child's Timeout is clamped to the request's deadline
            group.create_task(sw.Timeout(10.0).run(asyncio.sleep, FOREVER))
            group.create_task(sw.Timeout(10.0).run(asyncio.sleep, FOREVER))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    transport = httpx.ASGITransport(app=DeadlineMiddleware(handler, buffer=0.0))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/", headers={"Request-Deadline-Ms": "30"})
    assert response.status_code == 504


@pytest.mark.parametrize(
    "group",
    [
        ExceptionGroup("mixed", [sw.DeadlineExceeded("late"), ValueError("bug")]),
        ExceptionGroup("other", [ValueError("bug")]),
    ],
    ids=["mixed", "other"],
)
async def test_other_groups_still_propagate(group: ExceptionGroup[Exception]) -> None:
    async def handler(scope: Any, receive: Any, send: Any) -> None:
        raise group

    sent, escaped = await drive(handler, b"30000")
    assert escaped is group
    assert sent == []


async def test_a_deadline_group_after_the_response_started_propagates() -> None:
    group = ExceptionGroup("late", [sw.DeadlineExceeded("late")])

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise group

    sent, escaped = await drive(handler, b"30000")
    assert escaped is group
    assert starts(sent) == [200]
