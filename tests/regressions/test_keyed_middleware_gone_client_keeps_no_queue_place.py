"""``KeyedBulkheadMiddleware``: a client that disconnected while its request waited for a shared slot kept its place.

The middleware waited in the shared queue without looking at ``receive()``: a request whose client had gone
(``http.disconnect``) kept its queue place for up to ``queue_timeout``, then the app ran for nobody. Under client
timeouts and retries the queue filled with dead requests, the pile-up a bulkhead exists to prevent. Now, while a
request waits, the middleware reads ``receive()``: a disconnect takes the request out of the queue at once (its
compartment slot and queue place given back, the app not run, nothing sent); body messages read meanwhile are kept
(up to a limit) and replayed to the app in order. A request admitted at once is untouched (its own ``receive``, no
task). Driven with a raw ASGI harness on events: no timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import pytest

from stalwart.asgi import KeyedBulkheadMiddleware
from stalwart.asgi._bulkhead_middleware import MAX_BUFFERED_BYTES, MAX_BUFFERED_MESSAGES

DISCONNECT = {"type": "http.disconnect"}


def body(data: bytes = b"", *, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


class Connection:
    """One client connection: what the server will deliver to ``receive()``, and what the app sent."""

    def __init__(self, path: str, user: str | None, *messages: dict[str, Any], expect: bool = False) -> None:
        headers = [(b"expect", b"100-continue")] if expect else []
        self.scope: dict[str, Any] = {"type": "http", "path": path, "user": user, "headers": headers}
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.inbox.put_nowait(message)
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        message = await self.inbox.get()
        self.received += 1
        return message

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)


class App:
    """Records what ran and every message each request's app read; ``/slow`` holds its slot until ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.ran: list[str] = []
        self.read: dict[str, list[dict[str, Any]]] = {}
        self.receives: dict[str, Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        self.ran.append(path)
        self.receives[path] = receive
        read = self.read.setdefault(path, [])
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if path == "/slow":
            await self.gate.wait()
        if path == "/listen":  # waits for the client to go, as a streaming response's disconnect listener does
            read.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def resolver(scope: Any) -> Hashable | None:
    user: str | None = scope["user"]
    return user


KEYED = pytest.param("anonymous", id="keyed")
SHARED_ONLY = pytest.param(None, id="shared-only")


def middleware(app: App, unresolved: Hashable | None, **limits: Any) -> KeyedBulkheadMiddleware:
    limits.setdefault("max_concurrent", 1)
    limits.setdefault("max_per_key", 1)
    limits.setdefault("queue_timeout", None)
    return KeyedBulkheadMiddleware(app, resolver=resolver, unresolved=unresolved, **limits)


def start(mw: KeyedBulkheadMiddleware, connection: Connection) -> asyncio.Task[None]:
    return asyncio.create_task(mw(connection.scope, connection.receive, connection.send))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def user(unresolved: Hashable | None, name: str) -> str | None:
    """The user of a request: its own name when keyed, none (shared slot only) otherwise."""
    return name if unresolved is not None else None


def assert_idle(mw: KeyedBulkheadMiddleware) -> None:
    stats = mw.bulkhead.statistics()
    assert (stats.active, stats.queued, stats.available) == (0, 0, stats.max_concurrent)


def leftover_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


@pytest.mark.parametrize("unresolved", [KEYED, SHARED_ONLY])
async def test_a_disconnect_while_queued_leaves_the_queue_at_once(unresolved: Hashable | None) -> None:
    app = App()
    mw = middleware(app, unresolved)
    slow = Connection("/slow", user(unresolved, "a"), body())
    running = start(mw, slow)
    await settle()
    gone = Connection("/gone", user(unresolved, "b"), body())
    waiting = start(mw, gone)
    await settle()
    assert mw.bulkhead.statistics().queued == 1
    gone.inbox.put_nowait(DISCONNECT)
    await settle()  # no time passes: the wait ends because the client went, not because of a timeout
    assert waiting.done()
    assert waiting.result() is None
    stats = mw.bulkhead.statistics()
    assert (stats.active, stats.queued) == (1, 0)
    assert mw.bulkhead.active_for("b") == 0
    assert gone.sent == []  # the client is gone: nothing is sent
    app.gate.set()
    await running
    assert app.ran == ["/slow"]
    assert slow.status() == 200
    assert_idle(mw)
    assert leftover_tasks() == set()


@pytest.mark.parametrize("unresolved", [KEYED, SHARED_ONLY])
async def test_gone_clients_do_not_fill_the_queue(unresolved: Hashable | None) -> None:
    app = App()
    mw = middleware(app, unresolved, max_concurrent=1, max_queue=2)
    slow = Connection("/slow", user(unresolved, "a"), body())
    running = start(mw, slow)
    await settle()
    for i in range(10):  # clients that time out and retry: each attempt queues, then goes
        gone = Connection("/gone", user(unresolved, f"retry{i}"), body())
        waiting = start(mw, gone)
        await settle()
        gone.inbox.put_nowait(DISCONNECT)
        await settle()
        assert waiting.done()
    live = Connection("/live", user(unresolved, "c"), body())
    admitted = start(mw, live)
    await settle()
    assert live.sent == []  # queued, not refused: the dead requests hold no places
    assert mw.bulkhead.statistics().queued == 1
    app.gate.set()
    await asyncio.gather(running, admitted)
    assert app.ran == ["/slow", "/live"]
    assert live.status() == 200
    assert_idle(mw)


@pytest.mark.parametrize("unresolved", [KEYED, SHARED_ONLY])
async def test_the_body_read_while_queued_is_replayed_in_order(unresolved: Hashable | None) -> None:
    app = App()
    mw = middleware(app, unresolved)
    running = start(mw, Connection("/slow", user(unresolved, "a"), body()))
    await settle()
    chunks = [body(b"ab", more=True), body(b"cd", more=True), body(b"ef")]
    upload = Connection("/upload", user(unresolved, "b"), *chunks)
    waiting = start(mw, upload)
    await settle()
    assert upload.received == 3  # read while queued (and a fourth read waits for a disconnect)
    app.gate.set()
    await asyncio.gather(running, waiting)
    assert app.read["/upload"] == chunks
    assert upload.status() == 200
    assert_idle(mw)
    assert leftover_tasks() == set()  # the pending read was ended with the request


async def test_a_disconnect_after_admission_reaches_the_app() -> None:
    app = App()
    mw = middleware(app, "anonymous")
    running = start(mw, Connection("/slow", "a", body()))
    await settle()
    listen = Connection("/listen", "b", body())
    waiting = start(mw, listen)
    await settle()
    app.gate.set()
    await running
    await settle()
    assert app.ran == ["/slow", "/listen"]
    listen.inbox.put_nowait(DISCONNECT)  # the read the middleware started while queued answers the app
    await waiting
    assert app.read["/listen"] == [body(), DISCONNECT]
    assert_idle(mw)


async def test_the_buffer_is_bounded_and_the_app_reads_the_rest_itself() -> None:
    app = App()
    mw = middleware(app, "anonymous")
    running = start(mw, Connection("/slow", "a", body()))
    await settle()
    chunk = MAX_BUFFERED_BYTES // 4
    chunks = [body(bytes([i]) * chunk, more=True) for i in range(9)] + [body(b"end")]
    upload = Connection("/upload", "b", *chunks)
    waiting = start(mw, upload)
    await settle()
    assert upload.received == 4  # stopped reading once MAX_BUFFERED_BYTES were held
    app.gate.set()
    await asyncio.gather(running, waiting)
    assert app.read["/upload"] == chunks  # the app read the rest directly, in order

    many = [body(b"x", more=True) for _ in range(MAX_BUFFERED_MESSAGES + 5)] + [body()]
    app.gate.clear()
    running = start(mw, Connection("/slow", "a", body()))
    await settle()
    upload = Connection("/upload2", "b", *many)
    waiting = start(mw, upload)
    await settle()
    assert upload.received == MAX_BUFFERED_MESSAGES
    app.gate.set()
    await asyncio.gather(running, waiting)
    assert app.read["/upload2"] == many
    assert_idle(mw)


@pytest.mark.parametrize("unresolved", [KEYED, SHARED_ONLY])
async def test_a_waiting_request_cancelled_from_outside_gives_everything_back(unresolved: Hashable | None) -> None:
    app = App()
    mw = middleware(app, unresolved)
    running = start(mw, Connection("/slow", user(unresolved, "a"), body()))
    await settle()
    waiting = start(mw, Connection("/cancelled", user(unresolved, "b"), body(b"x", more=True)))
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await settle()
    stats = mw.bulkhead.statistics()
    assert (stats.active, stats.queued) == (1, 0)
    assert mw.bulkhead.active_for("b") == 0
    assert leftover_tasks() == {running}  # the read the middleware started while queued is ended too
    app.gate.set()
    await running
    assert app.ran == ["/slow"]
    assert_idle(mw)


async def test_a_queue_timeout_still_answers_503_and_ends_the_watch() -> None:
    app = App()
    mw = middleware(app, "anonymous", queue_timeout=30.0)
    running = start(mw, Connection("/slow", "a", body()))
    await settle()
    late = Connection("/late", "b", body())
    waiting = start(mw, late)
    await settle()
    shared = mw.bulkhead.shared
    shared._time_out(shared._waiters[0])  # the queue_timeout timer fires (no real sleep)
    await waiting
    assert late.status() == 503
    assert mw.bulkhead.active_for("b") == 0
    assert leftover_tasks() == {running}
    app.gate.set()
    await running
    assert app.ran == ["/slow"]
    assert_idle(mw)


async def test_a_disconnect_racing_the_grant_leaks_nothing() -> None:
    app = App()
    mw = middleware(app, "anonymous")
    running = start(mw, Connection("/slow", "a", body()))
    await settle()
    racer = Connection("/racer", "b", body())
    waiting = start(mw, racer)
    await settle()
    app.gate.set()
    racer.inbox.put_nowait(DISCONNECT)
    await asyncio.gather(running, waiting)
    assert_idle(mw)
    assert mw.bulkhead.active_for("b") == 0
    assert leftover_tasks() == set()


@pytest.mark.parametrize("unresolved", [KEYED, SHARED_ONLY])
async def test_a_request_admitted_at_once_gets_its_own_receive_and_no_task(unresolved: Hashable | None) -> None:
    app = App()
    mw = middleware(app, unresolved)
    tasks_before = len(asyncio.all_tasks())
    seen: list[int] = []

    async def probe(scope: Any, receive: Any, send: Any) -> None:
        seen.append(len(asyncio.all_tasks()))
        await app(scope, receive, send)

    mw.app = probe
    fast = Connection("/fast", user(unresolved, "a"), body())
    await mw(fast.scope, fast.receive, fast.send)  # in this task: no task of the test's own either
    assert app.receives["/fast"] == fast.receive  # the server's receive, not a wrapper
    assert seen == [tasks_before]
    assert fast.status() == 200
    assert_idle(mw)


async def test_expect_100_continue_is_not_read_while_queued() -> None:
    app = App()
    mw = middleware(app, "anonymous")
    running = start(mw, Connection("/slow", "a", body()))
    await settle()
    upload = Connection("/upload", "b", body(b"data"), expect=True)
    waiting = start(mw, upload)
    await settle()
    assert upload.received == 0  # reading would make the server send 100 Continue for a request not admitted
    app.gate.set()
    await asyncio.gather(running, waiting)
    assert app.read["/upload"] == [body(b"data")]
    assert_idle(mw)


async def test_a_request_cancelled_while_its_app_awaits_the_handed_over_read_ends_it() -> None:
    app = App()
    mw = middleware(app, "anonymous")
    running = start(mw, Connection("/slow", "a", body()))
    await settle()
    listen = Connection("/listen", "b", body())
    waiting = start(mw, listen)
    await settle()
    app.gate.set()
    await running
    await settle()
    assert app.ran == ["/slow", "/listen"]  # its app now waits on the read the middleware started while queued
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await settle()
    assert leftover_tasks() == set()
    assert_idle(mw)


async def test_a_disconnect_is_told_from_a_cancellation_swallowed_before_the_middleware() -> None:
    app = App()
    mw = middleware(app, "anonymous")
    running = start(mw, Connection("/slow", "a", body()))
    await settle()
    gone = Connection("/gone", "b", body())

    async def swallowing_layer() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # swallowed without uncancel(): the task's cancelling() count stays at 1
        await mw(gone.scope, gone.receive, gone.send)

    waiting = asyncio.create_task(swallowing_layer())
    await settle()
    gone.inbox.put_nowait(DISCONNECT)
    await settle()
    assert waiting.done()
    assert waiting.result() is None  # the middleware's own cancellation is consumed, not raised
    app.gate.set()
    await running
    assert app.ran == ["/slow"]
    assert_idle(mw)
