"""The three services of the ``cascade`` scenario (the seed's first figure): A calls B, B calls C.

* **C** answers in a few milliseconds until ``hang_at`` seconds into the run, then *hangs*: each request takes
  ``hang_for`` seconds of work before it answers. C watches its connection while it works and counts the jobs it
  finished for a caller that had already hung up: the **wasted work**.
* **B** calls C and relays C's answer (502 when the call to C fails).
* **A** calls B and relays B's answer, with the fallback marker when its client's fallback answered (502 when the
  call to B fails).

A and B count the requests they are working on (:class:`Gauge`): the **pile-up**. On the resilient side each
service runs behind :class:`~stalwart.asgi.DeadlineMiddleware` and calls the next one through
:class:`~stalwart.httpx.AsyncResilientTransport`, which sends each attempt's time left as ``Request-Deadline-Ms``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

import httpx

from stalwart._clock import SYSTEM_CLOCK, Clock

from ._clients import FALLBACK_HEADER

__all__ = ["Gauge", "ServiceC", "counting", "relay"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTHY_DELAY = 0.005
"""Seconds a healthy C takes per request."""


class Gauge:
    """Requests in flight in a service, and the most seen at once (one event loop: no lock needed)."""

    __slots__ = ("now", "peak")

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        """A request arrived."""
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        """A request ended."""
        self.now -= 1


def counting(app: ASGIApp, gauge: Gauge) -> ASGIApp:
    """``app`` with its HTTP requests counted in ``gauge`` while they run."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        gauge.enter()
        try:
            await app(scope, receive, send)
        finally:
            gauge.leave()

    return counted


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ServiceC:
    """C: healthy, then hanging from ``hang_at`` seconds after ``start`` (``clock`` time).

    Attributes:
        started: requests that began work.
        finished: jobs done (answered, or tried to).
        wasted: jobs finished after their caller had hung up.
        cancelled: jobs cancelled before they were done (by C's deadline).
        abandoned: jobs stopped by :meth:`close` at the end of the run.
    """

    def __init__(self, *, hang_at: float, hang_for: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.start = 0.0
        self.hang_at = hang_at
        self.hang_for = hang_for
        self.clock = clock
        self.started = 0
        self.finished = 0
        self.wasted = 0
        self.cancelled = 0
        self.abandoned = 0
        self._closing = asyncio.Event()

    def close(self) -> None:
        """The run is over: jobs still working stop now (counted as abandoned) so the server can stop cleanly."""
        self._closing.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request: work, watching the connection, then answer."""
        if scope["type"] != "http":
            return
        await receive()  # the (empty) request body
        hanging = self.clock.monotonic() - self.start >= self.hang_at
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        self.started += 1
        try:
            async with asyncio.timeout(self.hang_for if hanging else HEALTHY_DELAY):  # the work
                await self._closing.wait()
        except TimeoutError:
            pass  # the work took its time: done
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        else:
            self.abandoned += 1
            await _answer(send, 503, b'{"service":"c","closing":true}')
            return
        finally:
            watcher.cancel()
        self.finished += 1
        if gone.is_set():
            self.wasted += 1  # nobody is waiting for this answer any more
            return
        await _answer(send, 200, b'{"service":"c"}')


def relay(client: httpx.AsyncClient, path: str = "/work") -> ASGIApp:
    """A service calling the next one with ``client`` and relaying its answer (502 when the call fails).

    The fallback marker of the client's fallback is passed on, so the user can tell a default answer.
    """

    async def service(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            response = await client.get(path)
        except httpx.HTTPError as exc:
            await _answer(send, 502, json.dumps({"error": type(exc).__name__}).encode())
            return
        except Exception as exc:  # a stalwart rejection (open circuit, full bulkhead, passed deadline)
            await _answer(send, 503, json.dumps({"error": type(exc).__name__}).encode())
            return
        extra = []
        marker = response.headers.get(FALLBACK_HEADER)
        if marker is not None:
            extra.append((FALLBACK_HEADER.encode(), marker.encode()))
        await _answer(send, response.status_code, response.content, extra)

    return service
