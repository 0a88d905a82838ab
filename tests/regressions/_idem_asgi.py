"""Raw-ASGI scaffolding shared by the idempotency regression tests (``tests/regressions/test_idem_*.py``).

The regression tests drive :class:`~stalwart.idempotency.IdempotencyMiddleware` directly, without a web framework, so
that each one pins exactly the ASGI messages of the defect it guards. What they all need lives here:

- :func:`post` sends one request through the middleware and returns its :class:`Answer` (status, headers, body and
  the raw messages);
- :class:`CountingApp` is the trivial handler (reads the body, answers 201) counting its runs, and answers the
  lifespan protocol too;
- :class:`FaultyStore` is a :class:`~stalwart.idempotency.MemoryStore` that counts its calls and fails where told;
- :class:`StoreClock` (wall clock of a store) and :class:`GatedClock` (the middleware's monotonic clock, sleeps
  wait for the test to move it) are fake clocks; :func:`spin` yields to the event loop;
- :class:`Lifespan` and :func:`run_lifespan` drive an app's lifespan like a server.

Imported as a plain module (``from _idem_asgi import ...``): pytest puts a test file's folder on ``sys.path`` (there
is no ``__init__.py``), as ``tests/idempotency`` does for its ``idem_*`` helpers. The leading underscore keeps pytest
from collecting it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stalwart import StoreUnavailable
from stalwart.idempotency import IdempotencyMiddleware, Identity, MemoryStore

SECRET = b"s" * 32
"""The middleware secret of these tests (32 bytes)."""

SERVER_SCOPE: dict[str, Any] = {"asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http", "root_path": ""}
"""The scope keys a real server adds, for :func:`post`'s ``scope=`` when a test wants a complete scope."""

Message = dict[str, Any]


# -- requests --------------------------------------------------------------------------------------------------------


def http_scope(
    *,
    key: str | bytes | None = "k-1",
    method: str = "POST",
    path: str = "/payments",
    raw_path: bytes | None = None,
    query_string: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    scope: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ASGI ``http`` scope.

    ``key`` (str or bytes; None: no header) becomes the first ``idempotency-key`` header, followed by ``headers``;
    ``raw_path`` defaults to ``path`` encoded; ``scope`` adds or replaces keys (e.g. :data:`SERVER_SCOPE`, ``user``,
    ``extensions``).
    """
    lines: list[tuple[bytes, bytes]] = []
    if key is not None:
        lines.append((b"idempotency-key", key.encode() if isinstance(key, str) else key))
    lines.extend(headers)
    out: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode() if raw_path is None else raw_path,
        "query_string": query_string,
        "headers": lines,
    }
    out.update(scope or {})
    return out


@dataclass
class Answer:
    """What the middleware sent for one request: ``messages`` in order, and ``scope`` as the middleware left it."""

    scope: dict[str, Any]
    messages: list[Message] = field(default_factory=list)

    @property
    def starts(self) -> list[Message]:
        """Every ``http.response.start`` message (one for a well-behaved middleware)."""
        return [m for m in self.messages if m["type"] == "http.response.start"]

    @property
    def status(self) -> int | None:
        """The response status; None when no response was started. More than one start fails the test."""
        starts = self.starts
        assert len(starts) <= 1, f"{len(starts)} response starts for one request"
        return starts[0]["status"] if starts else None

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The response header lines, in order, duplicates kept ([] when no response was started)."""
        starts = self.starts
        assert len(starts) <= 1, f"{len(starts)} response starts for one request"
        return [(bytes(k), bytes(v)) for k, v in starts[0]["headers"]] if starts else []

    @property
    def headers(self) -> dict[bytes, bytes]:
        """The response headers as a dict (the last of duplicated names wins)."""
        return dict(self.raw_headers)

    @property
    def body(self) -> bytes:
        """The body: every ``http.response.body`` message's bytes, joined."""
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


async def post(
    mw: Any,
    *,
    key: str | bytes | None = "k-1",
    body: bytes = b"{}",
    method: str = "POST",
    path: str = "/payments",
    raw_path: bytes | None = None,
    query_string: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    scope: Mapping[str, Any] | None = None,
    sink: list[Message] | None = None,
    read_once: bool = False,
    send_fails: BaseException | None = None,
    swallow: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> Answer:
    """Send one request through the ASGI app ``mw`` (usually the middleware) and return its :class:`Answer`.

    The scope is :func:`http_scope` of the same arguments. ``receive`` answers ``body`` in one message
    (``more_body: False``) at every call; with ``read_once`` a second call fails the test (nothing may read past the
    body). ``send`` appends to ``sink`` (a fresh list by default; pass one to watch a request still running), or
    raises ``send_fails`` (a client gone). Exceptions of the types in ``swallow`` (re-raised by the middleware after
    it answered) are caught; anything else propagates.
    """
    answer = Answer(
        http_scope(
            key=key,
            method=method,
            path=path,
            raw_path=raw_path,
            query_string=query_string,
            headers=headers,
            scope=scope,
        ),
        [] if sink is None else sink,
    )
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        assert not (read_once and delivered), "the middleware must not read past the body"
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if send_fails is not None:
            raise send_fails
        answer.messages.append(message)

    try:
        await mw(answer.scope, receive, send)
    except swallow:
        pass
    return answer


def wrap(app: Any, store: Any = None, **kwargs: Any) -> IdempotencyMiddleware:
    """``IdempotencyMiddleware(app, ...)`` with these tests' defaults: a fresh :class:`MemoryStore` when ``store`` is
    None, a resolver answering ``Identity("alice")`` and :data:`SECRET`; ``kwargs`` override or add arguments."""
    kwargs.setdefault("resolver", lambda scope: Identity("alice"))
    kwargs.setdefault("secret", SECRET)
    return IdempotencyMiddleware(app, store=MemoryStore() if store is None else store, **kwargs)


# -- apps ------------------------------------------------------------------------------------------------------------


async def serve_lifespan(receive: Any, send: Any) -> None:
    """The app side of the lifespan protocol: completes start-up, then returns once shut-down is complete."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class CountingApp:
    """A handler that reads the whole request body and answers ``status`` (201) with ``headers`` and ``body``.

    ``body`` is bytes, or a function of the run number (1 for the first run) giving them. With ``first``, the first
    run (after reading the body) awaits ``first(send)`` instead of answering: it may answer otherwise, or raise.
    ``calls`` counts the runs. A ``lifespan`` scope is served by :func:`serve_lifespan` (not counted).
    """

    def __init__(
        self,
        status: int = 201,
        body: bytes | Callable[[int], bytes] = b"charged",
        headers: Iterable[tuple[bytes, bytes]] = (),
        *,
        first: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = list(headers)
        self.first = first
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        self.calls += 1
        while (await receive()).get("more_body"):
            pass
        if self.first is not None and self.calls == 1:
            await self.first(send)
            return
        body = self.body(self.calls) if callable(self.body) else self.body
        await send({"type": "http.response.start", "status": self.status, "headers": list(self.headers)})
        await send({"type": "http.response.body", "body": body})


# -- stores ----------------------------------------------------------------------------------------------------------


def unavailable(operation: str) -> BaseException:
    """The default failure of :class:`FaultyStore`: ``StoreUnavailable`` naming the operation."""
    return StoreUnavailable(f"{operation}: injected failure")


def refused(operation: str) -> BaseException:
    """A failure that proves nothing reached the store: ``StoreUnavailable`` with ``not_applied = True``."""
    exc = StoreUnavailable(f"{operation}: connection refused before the command was sent")
    exc.not_applied = True  # type: ignore[attr-defined]
    return exc


FAULTY_OPERATIONS = ("claim", "complete", "release", "abandon", "heartbeat", "get")


class FaultyStore(MemoryStore):
    """A :class:`MemoryStore` that counts its calls and fails where told (all attributes may change mid-test).

    - ``calls``: a ``Counter`` of the calls of each operation in :data:`FAULTY_OPERATIONS`;
    - ``results``: what each of those returned, per operation, in order;
    - ``fail_at``: the operations that fail at every call;
    - ``fail_next``: a ``Counter``: that many next calls of an operation fail (then it works again);
    - ``applied``: the failing operations whose write lands before the failure (the answer lost, not the write);
    - ``error``: the exception of a failure, from the operation's name (default :func:`unavailable`).
    """

    def __init__(
        self,
        *,
        fail_at: Iterable[str] = (),
        fail_next: Mapping[str, int] | None = None,
        applied: Iterable[str] = (),
        error: Callable[[str], BaseException] = unavailable,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if clock is None:
            super().__init__()
        else:
            super().__init__(clock=clock)
        self.fail_at = set(fail_at)
        self.fail_next: Counter[str] = Counter(fail_next or {})
        self.applied = set(applied)
        self.error = error
        self.calls: Counter[str] = Counter()
        self.results: dict[str, list[Any]] = {name: [] for name in FAULTY_OPERATIONS}

    def _fails(self, operation: str) -> bool:
        if operation in self.fail_at:
            return True
        if self.fail_next[operation] > 0:
            self.fail_next[operation] -= 1
            return True
        return False

    async def _run(self, operation: str, run: Callable[[], Any]) -> Any:
        self.calls[operation] += 1
        if self._fails(operation):
            if operation in self.applied:
                await run()
            raise self.error(operation)
        result = await run()
        self.results[operation].append(result)
        return result

    async def claim(self, record_id: str, **kwargs: Any) -> Any:
        return await self._run("claim", lambda: super(FaultyStore, self).claim(record_id, **kwargs))

    async def complete(self, record_id: str, **kwargs: Any) -> bool:
        return bool(await self._run("complete", lambda: super(FaultyStore, self).complete(record_id, **kwargs)))

    async def release(self, record_id: str, **kwargs: Any) -> bool:
        return bool(await self._run("release", lambda: super(FaultyStore, self).release(record_id, **kwargs)))

    async def abandon(self, record_id: str, **kwargs: Any) -> bool:
        return bool(await self._run("abandon", lambda: super(FaultyStore, self).abandon(record_id, **kwargs)))

    async def heartbeat(self, record_id: str, **kwargs: Any) -> bool:
        return bool(await self._run("heartbeat", lambda: super(FaultyStore, self).heartbeat(record_id, **kwargs)))

    async def get(self, record_id: str) -> Any:
        return await self._run("get", lambda: super(FaultyStore, self).get(record_id))


# -- clocks and the event loop ---------------------------------------------------------------------------------------


async def spin(turns: int = 50) -> None:
    """Let the event loop run ``turns`` times (background tasks of a few in-memory store calls finish)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def settle_background(mw: IdempotencyMiddleware, turns: int = 500, what: str = "background work") -> None:
    """Yield until the middleware has no background task left; fails the test after ``turns`` turns."""
    for _ in range(turns):
        if not mw._background:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"the {what} did not finish")


class StoreClock:
    """A store's wall clock (seconds since the epoch, float) that moves only when the test sets ``now``."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class GatedClock:
    """A monotonic clock whose ``asleep`` waits until the test advances time past the wake-up (no real sleeping)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._moved = asyncio.Event()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError("not used")

    async def asleep(self, seconds: float) -> None:
        wake = self.now + seconds
        while self.now < wake:
            self._moved.clear()
            await self._moved.wait()

    def move(self, seconds: float) -> None:
        """Move time forward and wake the sleepers, without yielding."""
        self.now += seconds
        self._moved.set()

    async def advance(self, seconds: float, turns: int = 50) -> None:
        """Move time forward, then let the woken sleepers run for ``turns`` turns of the event loop."""
        self.move(seconds)
        await spin(turns)


# -- lifespan --------------------------------------------------------------------------------------------------------

LIFESPAN_SCOPE: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}}


class Lifespan:
    """Drives an app's lifespan like a server: :meth:`start` sends ``lifespan.startup``, :meth:`stop`
    ``lifespan.shutdown``; ``sent`` holds every message the app sent back."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self.task: asyncio.Task[None] | None = None

    @property
    def types(self) -> list[str]:
        """The types of the messages sent so far."""
        return [m["type"] for m in self.sent]

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    async def start(self, turns: int = 50) -> None:
        """Send ``lifespan.startup`` and let the app run ``turns`` turns of the event loop (its reply is in
        ``sent``)."""
        self.incoming.put_nowait({"type": "lifespan.startup"})
        self.task = asyncio.ensure_future(self.app(dict(LIFESPAN_SCOPE), self.incoming.get, self._send))
        await spin(turns)

    async def stop(self, timeout: float = 5.0) -> None:
        """Send ``lifespan.shutdown`` and wait (at most ``timeout`` seconds) for the app's lifespan to return."""
        assert self.task is not None, "not started"
        self.incoming.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self.task, timeout)


async def run_lifespan(app: Any, timeout: float = 5.0) -> list[Message]:
    """Start-up then, once start-up completed, shut-down, as a server drives them; returns what the app sent."""
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            incoming.put_nowait({"type": "lifespan.shutdown"})

    incoming.put_nowait({"type": "lifespan.startup"})
    await asyncio.wait_for(app(dict(LIFESPAN_SCOPE), incoming.get, send), timeout)
    return sent
