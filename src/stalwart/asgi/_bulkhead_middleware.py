"""``KeyedBulkheadMiddleware``: a bulkhead compartment per user or tenant in front of an ASGI app (pure ASGI).

Flow per HTTP request (other scope types pass through): resolve the request's key (user, tenant, API client) with
the resolver; take a permit of that key's compartment and a shared slot of the :class:`~stalwart.KeyedBulkhead`;
run the app holding both, releasing them when the app returns (after the whole response, streaming included), is
cancelled or fails. A key already running ``max_per_key`` requests, or no shared slot in time, is answered at once
with **503** and ``Retry-After``, so one noisy user cannot starve the others.

A request admitted at once runs with the server's own ``receive`` (no task, no wrapper). A request that must queue
for a shared slot has its ``receive()`` read by a watcher task meanwhile: an ``http.disconnect`` takes it out of
the queue at once (its places given back, the app never run, nothing sent), and the body read ahead is replayed to
the app (``_Replay``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, MutableMapping
from datetime import timedelta
from typing import Any, TypeAlias, cast

from stalwart._config import check_int
from stalwart._exceptions import BulkheadFullError
from stalwart._keyed_bulkhead import CompartmentFullError, KeyedBulkhead
from stalwart._policy import is_async_callable

__all__ = ["KeyResolver", "KeyedBulkheadMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

KeyResolver: TypeAlias = Callable[[Scope], "Hashable | Awaitable[Hashable | None] | None"]
"""``(asgi_scope) -> key | None``, sync or async: the *verified* user, tenant or client the request belongs to."""

logger = logging.getLogger("stalwart")

_DEFAULT: Any = object()  # queue_timeout not given (None means "no limit of its own")
_DETAIL_KEY = "too many requests of this client are running; retry shortly"
_DETAIL_SHARED = "the server is at capacity; retry shortly"


def _problem(detail: str) -> bytes:
    body = {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": detail}
    return json.dumps(body, separators=(",", ":")).encode()


_BODY_KEY = _problem(_DETAIL_KEY)
_BODY_SHARED = _problem(_DETAIL_SHARED)


MAX_BUFFERED_BYTES = 65536
"""Request body (bytes) a queued request's watcher reads ahead and keeps for the app; it stops reading beyond."""
MAX_BUFFERED_MESSAGES = 64
"""Messages a queued request's watcher reads ahead and keeps for the app; it stops reading beyond."""


def _expects_continue(scope: Scope) -> bool:
    """``Expect: 100-continue``: reading the body would make the server send ``100 Continue`` before admission."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"expect" and value.strip().lower() == b"100-continue":
            return True
    return False


class _Replay:
    """A queued request's ``receive()``: a watcher task reads it while the request waits for a slot.

    The watcher keeps what it reads (at most ``MAX_BUFFERED_BYTES`` of body or ``MAX_BUFFERED_MESSAGES``
    messages: then it stops, and the app reads the rest itself) and, on ``http.disconnect`` while the request still
    waits, marks the client ``gone`` and cancels the waiting task. Once the slot is granted it only finishes the read
    in progress; the app (calling this object) gets the kept messages in order, then that read's message, then
    the server's ``receive()`` directly.
    """

    __slots__ = ("buffer", "error", "gone", "receive", "waiting", "watcher")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.buffer: deque[Message] = deque()
        self.error: Exception | None = None
        self.gone = False
        self.waiting = True
        self.watcher: asyncio.Task[None] | None = None

    def watch(self, task: asyncio.Task[Any]) -> None:
        self.watcher = asyncio.get_running_loop().create_task(self._watch(task))

    async def _watch(self, task: asyncio.Task[Any]) -> None:
        buffer = self.buffer
        size = 0
        while self.waiting and len(buffer) < MAX_BUFFERED_MESSAGES and size < MAX_BUFFERED_BYTES:
            try:
                message = await self.receive()
            except Exception as error:  # kept for the app's next read; the wait goes on unwatched
                self.error = error
                return
            if message["type"] == "http.disconnect" and self.waiting:
                self.gone = True
                task.cancel()
                return
            buffer.append(message)
            body = message.get("body")
            if body:
                size += len(body)

    def end(self) -> None:
        """Stop watching (the wait failed, or the app returned): a read still in progress is cancelled."""
        self.waiting = False
        watcher = self.watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()

    async def __call__(self) -> Message:
        watcher = self.watcher
        if not self.buffer and watcher is not None and not watcher.done():
            await asyncio.wait((watcher,))  # the read it started; a cancellation of the app does not cancel it
        if self.buffer:
            return self.buffer.popleft()
        error = self.error
        if error is not None:
            self.error = None
            raise error
        return await self.receive()


class KeyedBulkheadMiddleware:
    """Limit concurrent requests per key (user, tenant) and in all; 503 with ``Retry-After`` beyond the limits.

    Pure ASGI (``app = KeyedBulkheadMiddleware(app, resolver=...)``; with Starlette or FastAPI,
    ``app.add_middleware(KeyedBulkheadMiddleware, resolver=..., max_per_key=5)``). Put it after (inside) the
    authentication middleware, so the resolver sees a verified identity, and inside
    :class:`~stalwart.asgi.DeadlineMiddleware`, so a wait for a shared slot never outlasts the caller's deadline.

    **The key must be verified.** A key taken from a header the client controls lets anyone fill someone else's
    compartment. The idempotency middleware's resolvers (``Identity`` values) work here unchanged.

    Responses: a key at its limit → 503 (``CompartmentFullError``; the key's other requests keep running); no
    shared slot within ``queue_timeout`` (or the queue full) → 503 too. Both carry ``Retry-After: retry_after``,
    ``cache-control: no-store`` and an ``application/problem+json`` body (RFC 9457).

    Clients that go while queued: a request waiting for a shared slot has its ``receive()`` watched. On
    ``http.disconnect`` it leaves the queue at once (its compartment slot and queue place given back), the app is
    not run and nothing is sent. Body messages read while waiting are kept and replayed to the app in order; the
    watcher stops reading once it holds ``MAX_BUFFERED_BYTES`` (64 KiB, the message crossing it included) or
    ``MAX_BUFFERED_MESSAGES`` (64) messages, and the app reads the rest itself (a disconnect after that point is
    no longer noticed during the wait). A request with ``Expect: 100-continue`` is not watched (reading its body
    would make the server send ``100 Continue`` before it is admitted). A request admitted at once is not watched
    at all: the app gets the server's ``receive``.

    Args:
        app: the ASGI application.
        resolver: ``(scope) -> key | None``, sync or async (detected once; an awaitable returned by a resolver
            taken for sync is awaited too). Its exceptions are logged on the ``stalwart`` logger and the request is
            treated as unresolved.
        bulkhead: the :class:`~stalwart.KeyedBulkhead` to use (share one between middlewares or with other code);
            default: one built from the limits below, named ``name``.
        name: the name of the bulkhead built here (default ``"asgi"``).
        max_per_key, max_concurrent, max_queue, queue_timeout, max_idle_keys: the limits of the bulkhead built
            here (defaults: ``KeyedBulkhead``'s: 10, 100, 100, 30.0 s, 1024). Not allowed with ``bulkhead``.
        unresolved: the key used when the resolver returns ``None`` (default ``"anonymous"``: anonymous requests
            share one compartment). ``None``: such requests take only a shared slot.
        retry_after: the ``Retry-After`` value in whole seconds, ``>= 0`` (default ``1``).

    Raises:
        TypeError: ``resolver`` is not callable, ``bulkhead`` is not a ``KeyedBulkhead``, or a parameter has the
            wrong type.
        ValueError: limits given together with ``bulkhead``, or a value out of range.
    """

    __slots__ = ("_bulkhead", "_resolver", "_resolver_is_async", "_retry_after", "_unresolved", "app")

    def __init__(
        self,
        app: ASGIApp,
        *,
        resolver: KeyResolver,
        bulkhead: KeyedBulkhead | None = None,
        name: str = "asgi",
        max_per_key: int | None = None,
        max_concurrent: int | None = None,
        max_queue: int | None = None,
        queue_timeout: float | timedelta | None = _DEFAULT,
        max_idle_keys: int | None = None,
        unresolved: Hashable | None = "anonymous",
        retry_after: int = 1,
    ) -> None:
        self.app = app
        if not callable(resolver):
            raise TypeError(f"resolver must be a callable (scope) -> key, got {resolver!r}")
        self._resolver = resolver
        self._resolver_is_async = is_async_callable(resolver)
        limits = {
            "max_per_key": max_per_key,
            "max_concurrent": max_concurrent,
            "max_queue": max_queue,
            "max_idle_keys": max_idle_keys,
        }
        given: dict[str, Any] = {k: v for k, v in limits.items() if v is not None}
        if queue_timeout is not _DEFAULT:
            given["queue_timeout"] = queue_timeout
        if bulkhead is None:
            bulkhead = KeyedBulkhead(name, **given)
        elif not isinstance(bulkhead, KeyedBulkhead):
            raise TypeError(f"bulkhead must be a KeyedBulkhead, got {bulkhead!r}")
        elif given:
            raise ValueError(f"give either bulkhead or its limits, not both (got {', '.join(sorted(given))})")
        self._bulkhead = bulkhead
        if unresolved is not None:
            hash(unresolved)
        self._unresolved = unresolved
        self._retry_after = str(check_int(retry_after, "retry_after", minimum=0)).encode()

    @property
    def bulkhead(self) -> KeyedBulkhead:
        """The keyed bulkhead (its ``statistics()`` feed ``/health/bulkheads``)."""
        return self._bulkhead

    def __repr__(self) -> str:
        return f"KeyedBulkheadMiddleware({self._bulkhead!r}, unresolved={self._unresolved!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection (only ``http`` scopes are limited)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = await self._resolve(scope)
        if key is None:
            key = self._unresolved
        bulkhead = self._bulkhead
        shared = bulkhead.shared
        compartment = None
        if key is not None:
            try:
                compartment = bulkhead._take(key)  # no per-key queue: a full compartment is refused at once
            except CompartmentFullError:
                await self._reject(send, _BODY_KEY)
                return
        if shared.try_acquire():  # the fast path: a free slot and nobody queued; the app gets the server's receive
            try:
                await self.app(scope, receive, send)
            finally:
                shared.release()
                if compartment is not None:
                    bulkhead._give(compartment)
            return
        try:
            replay = await self._queue(scope, receive)
        except BulkheadFullError:
            if compartment is not None:
                bulkhead._give(compartment)
            await self._reject(send, _BODY_SHARED)
            return
        except BaseException:
            if compartment is not None:
                bulkhead._give(compartment)
            raise
        if replay is None:  # the client went while queued: its place is given back, nothing is sent
            if compartment is not None:
                bulkhead._give(compartment)
            return
        try:
            await self.app(scope, replay if replay.watcher is not None else receive, send)
        finally:
            replay.end()
            shared.release()
            if compartment is not None:
                bulkhead._give(compartment)

    async def _queue(self, scope: Scope, receive: Receive) -> _Replay | None:
        """Wait for a shared slot watching ``receive()``; ``None`` when the client disconnected meanwhile.

        Raises:
            BulkheadFullError: no slot (queue full, ``queue_timeout``, the ambient deadline).
            asyncio.CancelledError: the request was cancelled from outside (nothing is held).
        """
        shared = self._bulkhead.shared
        replay = _Replay(receive)
        if len(shared._waiters) >= shared.max_queue or shared.queue_timeout == 0 or _expects_continue(scope):
            await shared.acquire()  # refused at once (no task for that), or a body not to be asked for yet
            return replay
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        replay.watch(task)
        try:
            await shared.acquire()
        except asyncio.CancelledError:
            replay.end()
            if replay.gone and task.uncancel() <= cancelling:  # the watcher's cancellation alone: the client went
                return None
            raise
        except BaseException:
            replay.end()
            raise
        replay.waiting = False  # from here the watcher only finishes the read it started, for the app
        return replay

    async def _resolve(self, scope: Scope) -> Hashable | None:
        try:
            found = self._resolver(scope)
            if self._resolver_is_async or inspect.isawaitable(found):  # a sync callable may return an awaitable
                found = await cast("Awaitable[Hashable | None]", found)
            if found is not None:
                hash(found)
        except Exception:
            logger.exception("KeyedBulkheadMiddleware: the resolver failed; the request is treated as unresolved")
            return None
        return found

    async def _reject(self, send: Send, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", self._retry_after),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
