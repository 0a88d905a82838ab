"""Issue 6 rows: AdaptiveTimeout.record(), KeyedBulkhead against Bulkhead, DeadlineMiddleware over a bare ASGI app.

* ``adaptive``: one ``AdaptiveTimeout.record()`` of a latency drawn from a fixed log-normal sequence (so the
  window keeps changing, as in service), default settings (window 100) and a 10,000-sample window (the histogram
  estimator); baseline the bare sync call. Target: under 2 µs added per record.
* ``keyed-bulkhead``: ``KeyedBulkhead(max_per_key=10, max_concurrent=10)`` as a decorator keyed by the first
  argument, against ``Bulkhead(max_concurrent=10)`` decorating the same function (sync and async). Target: within
  1.5x of the Bulkhead row.
* ``deadline-middleware``: one request through a bare ASGI app answering 200 (a no-op ``send``), the same app
  under ``Timeout(10.0)``, and under ``DeadlineMiddleware`` with a ``Request-Deadline-Ms`` header (and without
  one). Target: the middleware with the header adds no more than the ``Timeout`` row plus 2 µs of header handling.
"""

from __future__ import annotations

import importlib
import random
from itertools import cycle
from typing import Any

from _common import BARE_ASYNC, BARE_SYNC, stalwart_name

__all__ = ["BARE_SYNC", "cases"]
from _harness import Case, Unavailable

ADAPTIVE = "adaptive"
KEYED = "keyed-bulkhead"
MIDDLEWARE = "deadline-middleware"

RECORD = "stalwart AdaptiveTimeout.record (sync)"
RECORD_LARGE = "stalwart AdaptiveTimeout.record, window 10,000 (sync)"
KEYED_ASYNC = "stalwart KeyedBulkhead (async)"
BULKHEAD_ASYNC = "stalwart Bulkhead, same function (async)"
KEYED_SYNC = "stalwart KeyedBulkhead (sync)"
BULKHEAD_SYNC = "stalwart Bulkhead, same function (sync)"
ASGI_BARE = "bare ASGI app (async)"
ASGI_TIMEOUT = "bare ASGI app under Timeout(10.0) (async)"
ASGI_DEADLINE = "stalwart DeadlineMiddleware, Request-Deadline-Ms (async)"
ASGI_NO_HEADER = "stalwart DeadlineMiddleware, no header (async)"

_LATENCIES = [random.Random(6).lognormvariate(-2.3, 0.5) for _ in range(4096)]


def _record(window: int) -> Any:
    adaptive = stalwart_name("AdaptiveTimeout")(maximum=1000.0, window=window)
    samples = cycle(_LATENCIES)
    for _ in range(window):
        adaptive.record(next(samples))
    record = adaptive.record

    def case() -> int:
        record(next(samples))
        return 1

    return case


def _keyed(mode: str) -> Any:
    keyed = stalwart_name("KeyedBulkhead")("bench-keyed", max_per_key=10, max_concurrent=10, key=lambda user: user)
    return keyed(_user_async if mode == "async" else _user_sync)


def _plain(mode: str) -> Any:
    bulkhead = stalwart_name("Bulkhead")("bench-keyed-reference", max_concurrent=10)
    return bulkhead(_user_async if mode == "async" else _user_sync)


def _user_sync(user: str) -> int:
    return 1


async def _user_async(user: str) -> int:
    return 1


def _bind(call: Any, mode: str) -> Any:
    if mode == "async":

        async def acase() -> int:
            return int(await call("user-7"))

        return acase

    def case() -> int:
        return int(call("user-7"))

    return case


_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
_BODY = {"type": "http.response.body", "body": b"ok", "more_body": False}
_HEADERS = [(b"host", b"service-b"), (b"accept", b"*/*"), (b"user-agent", b"python-httpx/0.28")]


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send(_START)
    await send(_BODY)


async def _send(message: Any) -> None:
    return None


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


def _request(app: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}

    async def case() -> int:
        await app(scope, _receive, _send)
        return 1

    return case


def _middleware(header: bool) -> Any:
    try:
        module = importlib.import_module("stalwart.asgi")
    except ImportError as exc:
        raise Unavailable(f"stalwart.asgi.DeadlineMiddleware not available ({exc})") from exc
    DeadlineMiddleware = module.DeadlineMiddleware
    headers = [*_HEADERS, (b"request-deadline-ms", b"10000")] if header else list(_HEADERS)
    return _request(DeadlineMiddleware(_app), headers)


def _under_timeout() -> Any:
    timeout = stalwart_name("Timeout")(10.0)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": list(_HEADERS)}

    async def case() -> int:
        await timeout.run(_app, scope, _receive, _send)
        return 1

    return case


def cases() -> list[Case]:
    """Every row of this module."""
    return [
        Case(ADAPTIVE, RECORD, "sync", lambda: _record(100), baseline=BARE_SYNC, stalwart=True),
        Case(ADAPTIVE, RECORD_LARGE, "sync", lambda: _record(10_000), baseline=BARE_SYNC, stalwart=True),
        Case(KEYED, KEYED_ASYNC, "async", lambda: _bind(_keyed("async"), "async"), baseline=BARE_ASYNC, stalwart=True),
        Case(
            KEYED, BULKHEAD_ASYNC, "async", lambda: _bind(_plain("async"), "async"), baseline=BARE_ASYNC, stalwart=True
        ),
        Case(KEYED, KEYED_SYNC, "sync", lambda: _bind(_keyed("sync"), "sync"), baseline=BARE_SYNC, stalwart=True),
        Case(KEYED, BULKHEAD_SYNC, "sync", lambda: _bind(_plain("sync"), "sync"), baseline=BARE_SYNC, stalwart=True),
        Case(MIDDLEWARE, ASGI_BARE, "async", lambda: _request(_app, list(_HEADERS)), baseline=BARE_ASYNC),
        Case(MIDDLEWARE, ASGI_TIMEOUT, "async", _under_timeout, baseline=ASGI_BARE, stalwart=True),
        Case(MIDDLEWARE, ASGI_DEADLINE, "async", lambda: _middleware(True), baseline=ASGI_BARE, stalwart=True),
        Case(MIDDLEWARE, ASGI_NO_HEADER, "async", lambda: _middleware(False), baseline=ASGI_BARE, stalwart=True),
    ]
