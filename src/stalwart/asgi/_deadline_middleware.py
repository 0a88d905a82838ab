"""``DeadlineMiddleware``: the caller's deadline becomes the handler's ambient deadline (pure ASGI).

Flow per HTTP request (other scope types pass through untouched):

1. Read the deadline headers (``_deadline_headers.read_budget``: ``Request-Deadline-Ms``, ``grpc-timeout``,
   ``x-envoy-expected-rq-timeout-ms``, ``X-Deadline``; the smallest valid budget wins, malformed values are
   ignored and logged once per header name). No header: the request runs with ``default_timeout`` or, by default,
   with no deadline at all.
2. Clamp the budget to ``max_timeout`` (a caller cannot ask for unbounded time), then keep ``buffer`` seconds for
   this service's own work: the handler's deadline is ``Deadline.after(budget).child(buffer)``. If that is already
   spent, answer 504 at once; the handler never runs.
3. Run the handler with that deadline as the ambient deadline (``current_deadline()``; policies and the httpx
   transport read it and send what is left downstream). A timer fires at the deadline: if the response has not
   started, the handler is cancelled and the client gets 504; once it has started, the response is left alone
   (the handler keeps running; its own policies still see the passed deadline).
4. When the response is complete, the ambient deadline is cleared for whatever the handler still runs (Starlette's
   background tasks), so post-response work does not inherit the request's deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from asyncio import current_task, get_running_loop
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._config import to_seconds, to_seconds_or_none
from stalwart._deadline import Deadline, _current, _new_deadline
from stalwart._deadline_headers import DEFAULT_INCOMING_HEADERS, read_budget
from stalwart._events import DeadlineExpired, emit, hooks_installed
from stalwart._exceptions import DeadlineExceeded

__all__ = ["DeadlineMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("stalwart")

_BODY_504 = json.dumps(
    {
        "type": "about:blank",
        "title": "Gateway Timeout",
        "status": 504,
        "detail": "the request's deadline passed before a response was ready",
    },
    separators=(",", ":"),
).encode()
_LENGTH_504 = str(len(_BODY_504)).encode()


def _wall_time() -> float:
    """This host's wall clock in POSIX seconds, used only for the absolute ``X-Deadline`` header."""
    return datetime.now(UTC).timestamp()


class _Exchange:
    """The per-request record: whether the response started, whether the timer cancelled the handler."""

    __slots__ = ("fired", "send", "started", "task")

    def __init__(self, task: asyncio.Task[Any], send: Send) -> None:
        self.task = task
        self.send = send
        self.started = False
        self.fired = False

    def expire(self) -> None:
        """Timer callback: cancel the handler unless its response has started (then leave it alone)."""
        if not self.started:
            self.fired = True
            self.task.cancel()

    async def __call__(self, message: Message) -> None:
        """The ``send`` given to the app."""
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True  # from here on the response is the app's, whatever happens
        await self.send(message)
        if kind == "http.response.body" and not message.get("more_body", False):
            _current.set(None)  # the response is complete: post-response work runs without the request's deadline


class DeadlineMiddleware:
    """Give each request's handler the caller's deadline, minus a buffer, as its ambient deadline.

    Pure ASGI: wrap any ASGI app (``app = DeadlineMiddleware(app)``; with Starlette or FastAPI,
    ``app.add_middleware(DeadlineMiddleware, buffer=0.5)``). Handlers read the time left with
    :func:`stalwart.current_deadline` / :func:`stalwart.remaining_time`; stalwart's policies never wait past it and
    the httpx transport sends what is left to the next service. Header formats and the precedence between them:
    ``docs/deadlines.md``.

    Responses:

    * **504 at once**, the handler never runs, when the budget is already spent (``0``, or no more than
      ``buffer``; an ``X-Deadline`` in the past).
    * **504 when the deadline passes before the response starts**: the handler is cancelled (``CancelledError``
      at its current ``await``; its ``finally`` blocks run). A :class:`~stalwart.DeadlineExceeded` escaping the
      app before the response starts (a ``Timeout`` inside it expired), or an exception group holding only such
      errors (a ``TaskGroup`` fan-out), is answered with 504 as well; a framework
      with its own last-resort error handler (Starlette's ``ServerErrorMiddleware``) answers 500 itself first,
      unless the app registers an exception handler for ``DeadlineExceeded``.
    * **Left alone once the response has started**: the status and headers are on the wire, so the handler is
      not cancelled; a streaming body keeps streaming. A response the handler starts while it is being cancelled
      is its own as well: no 504 follows it.
    * A malformed deadline header is ignored (the request runs as if it were absent) and logged once per header
      name at WARNING on the ``stalwart`` logger; it never causes a 500.
    * A cancellation from outside (client disconnect, server shutdown) propagates untouched.

    The 504 body is ``application/problem+json`` (RFC 9457). A :class:`~stalwart.DeadlineExpired` event is
    emitted for each 504 when hooks are installed.

    Background work: a task created in the handler copies its context, so it inherits the deadline (right for
    ``asyncio.gather`` / ``TaskGroup`` fan-out the handler waits for). Create work that should outlive the request
    inside :class:`stalwart.without_deadline`. Work run after the response is complete (Starlette's
    ``BackgroundTasks``) runs without the request's deadline.

    Args:
        app: the ASGI application.
        buffer: seconds kept for this service's own work (default ``0.5``, the seed's): the handler's deadline is
            the caller's minus this. ``float`` seconds >= 0 or a ``timedelta``.
        max_timeout: the largest budget a caller may ask for, seconds (default ``60.0``, the seed's longest total
            timeout); larger budgets are cut to it before the buffer is taken. ``None``: no cap.
        default_timeout: the handler's deadline, seconds, for requests without a (valid) deadline header (default
            ``None``: no deadline). No buffer is taken from it, and ``max_timeout`` does not apply.
        headers: the incoming headers to read, case-insensitive (default: all four,
            ``DEFAULT_INCOMING_HEADERS``). Leave out ``"x-deadline"`` to ignore the skew-prone absolute header.
        clock: the monotonic clock the deadline is measured on (default: the system clock). The timer that
            cancels the handler runs on the event loop.
        wall_clock: POSIX seconds, for ``X-Deadline`` only (default: the system's wall clock).

    Raises:
        ValueError: ``buffer`` negative or NaN, ``max_timeout`` or ``default_timeout`` not > 0, ``max_timeout`` not
            above ``buffer``, or a header name stalwart does not understand.
        TypeError: a parameter has the wrong type.
    """

    __slots__ = ("_accepted", "_buffer", "_clock", "_default", "_max", "_wall_clock", "_warned", "app")

    def __init__(
        self,
        app: ASGIApp,
        *,
        buffer: float | timedelta = 0.5,
        max_timeout: float | timedelta | None = 60.0,
        default_timeout: float | timedelta | None = None,
        headers: Iterable[str] = DEFAULT_INCOMING_HEADERS,
        clock: Clock = SYSTEM_CLOCK,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.app = app
        self._buffer = to_seconds(buffer, "buffer")
        maximum = to_seconds_or_none(max_timeout, "max_timeout", allow_zero=False, allow_inf=True)
        self._max = None if maximum is None or math.isinf(maximum) else maximum
        if self._max is not None and self._max <= self._buffer:
            raise ValueError(
                f"max_timeout ({self._max:g} s) must exceed buffer ({self._buffer:g} s): every request carrying a "
                "deadline would be answered 504 before its handler runs"
            )
        self._default = to_seconds_or_none(default_timeout, "default_timeout", allow_zero=False)
        if isinstance(headers, str | bytes):
            raise TypeError(f"headers must be a collection of header names, got {headers!r}")
        accepted = set()
        for name in headers:
            if not isinstance(name, str):
                raise TypeError(f"headers must contain header names (str), got {name!r}")
            if name.lower() not in DEFAULT_INCOMING_HEADERS:
                raise ValueError(
                    f"headers: unknown deadline header {name!r}; known: {', '.join(DEFAULT_INCOMING_HEADERS)}"
                )
            accepted.add(name.lower().encode())
        self._accepted = frozenset(accepted)
        self._clock = clock
        self._wall_clock = _wall_time if wall_clock is None else wall_clock
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"DeadlineMiddleware(buffer={self._buffer!r}, max_timeout={self._max!r}, "
            f"default_timeout={self._default!r}, headers={sorted(h.decode() for h in self._accepted)!r})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection (only ``http`` scopes are given a deadline)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        malformed: list[str] = []
        budget = read_budget(scope["headers"], self._accepted, self._wall_clock, malformed)
        if malformed:
            self._log_malformed(malformed)
        if budget is None:
            limit = self._default
            if limit is None:
                await self.app(scope, receive, send)
                return
        else:
            maximum = self._max
            if maximum is not None and budget > maximum:
                budget = maximum
            limit = budget - self._buffer  # Deadline.after(budget).child(buffer), without building two objects
            if limit <= 0.0:
                await _gateway_timeout(send, 0.0)
                return
        # The deadline scope (inlined: one coroutine frame less per request).
        loop = get_running_loop()
        task = current_task(loop)
        if task is None:
            raise RuntimeError("DeadlineMiddleware must run inside an asyncio task")
        clock = self._clock
        now = clock.monotonic()
        outer = _current.get()
        deadline: Deadline
        if outer is not None:  # an enclosing scope (another middleware) may be tighter still
            left = outer.at - (now if outer.clock is clock else outer.clock.monotonic())
            if left <= limit:
                if left <= 0.0:
                    await _gateway_timeout(send, 0.0)
                    return
                deadline, limit = outer, left
            else:
                deadline = _new_deadline(now + limit, clock)
        else:
            deadline = _new_deadline(now + limit, clock)
        exchange = _Exchange(task, send)
        token = _current.set(deadline)
        cancelling = task.cancelling()
        handle = loop.call_later(limit, exchange.expire)
        try:
            await self.app(scope, receive, exchange)
        except BaseException as exc:
            handle.cancel()
            _current.reset(token)
            if exchange.fired and task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
                # Our own cancellation (a cancellation from outside as well leaves the count above the entry
                # level and propagates). The timer fires only before the response starts, but the handler may
                # have started one while it was being cancelled (an error response in an ``except
                # CancelledError``): that response is the app's, so no second one is sent, and our own
                # cancellation, consumed here, does not escape.
                if not exchange.started:
                    await _gateway_timeout(send, limit)
                return
            if not exchange.started and _is_deadline_error(exc):
                await _gateway_timeout(send, limit)
                return
            raise
        handle.cancel()
        _current.reset(token)
        if exchange.fired:  # the handler swallowed our cancellation
            task.uncancel()
            if not exchange.started:
                await _gateway_timeout(send, limit)

    def _log_malformed(self, names: list[str]) -> None:
        for name in names:
            if name in self._warned:
                logger.debug("DeadlineMiddleware: ignored a malformed %s header", name)
            else:
                self._warned.add(name)
                logger.warning(
                    "DeadlineMiddleware: ignored a malformed %s header (the request runs as if it were absent; "
                    "further malformed values of this header are logged at DEBUG)",
                    name,
                )


def _is_deadline_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``DeadlineExceeded``, or an exception group holding nothing else.

    A handler fanning out with a ``TaskGroup`` under the request's deadline gets its children's
    ``DeadlineExceeded`` wrapped in an ``ExceptionGroup`` when their per-call timeouts (clamped to that deadline)
    expire: that is the request's deadline passing, a 504 like the bare error, not a 500.
    """
    if isinstance(exc, DeadlineExceeded):
        return True
    if isinstance(exc, BaseExceptionGroup):
        deadline_errors, rest = exc.split(DeadlineExceeded)
        return deadline_errors is not None and rest is None
    return False


async def _gateway_timeout(send: Send, limit: float) -> None:
    """Answer 504 (problem+json) and emit ``DeadlineExpired``."""
    if hooks_installed():
        emit(DeadlineExpired(limit))
    # Fresh messages each time: a middleware outside may add headers to the list in place.
    await send(
        {
            "type": "http.response.start",
            "status": 504,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", _LENGTH_504),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY_504, "more_body": False})
