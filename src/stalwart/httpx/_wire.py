"""What each attempt does to the request and its response: headers stamped for the attempt only, httpx's timeouts
clamped to the attempt's limit, discarded responses drained and closed, and the errors the drivers build.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import aclosing
from datetime import UTC, datetime
from operator import itemgetter
from typing import cast

import httpx

from stalwart._deadline_headers import GRPC_TIMEOUT_HEADER, format_grpc_timeout, format_request_deadline_ms
from stalwart._exceptions import DeadlineExceeded

__all__ = [
    "DRAIN_LIMIT",
    "RAW_HEADERS",
    "AttemptHeader",
    "DeadlineHeader",
    "StampedHeader",
    "checked",
    "clamp_timeouts",
    "close_unread_async",
    "close_unread_sync",
    "discard_async",
    "discard_sync",
    "expired",
    "status_error",
    "wall_time",
]

_CACHED = 64
_ABSENT = object()
_SECOND = itemgetter(1)
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")


def _raw_headers_supported() -> bool:
    """Whether ``httpx.Headers`` keeps its entries in ``_list`` as ``(name, lowercase name, value)`` byte triples
    (true from httpx 0.18 to at least 0.28)."""
    try:
        entries = httpx.Headers({"X-Probe": "1"})._list
    except Exception:
        return False
    return isinstance(entries, list) and entries == [(b"X-Probe", b"x-probe", b"1")]


RAW_HEADERS = _raw_headers_supported()


class StampedHeader:
    """Sets a header on a request for the duration of one attempt (the base of :class:`AttemptHeader` and
    :class:`DeadlineHeader`).

    The header is added before the attempt and removed after it, so the caller's request (``response.request``)
    ends as the caller built it; a header of the same name the caller set is replaced for the attempt and restored
    afterwards. The common case (the caller did not set it) appends one raw entry to ``httpx.Headers``' internal
    list and pops it afterwards, when a probe at import confirms that layout: ``headers[name] = value`` costs about
    a microsecond, and a header left on the request costs about two more in httpx's cookie handling, which walks
    every request header of every response. Otherwise the public API is used. Headers stamped on one request are
    unstamped in the reverse order.

    Args:
        name: the header name (ASCII).
        raw: use the internal list when possible (default: when the probe succeeded).
    """

    __slots__ = ("lower", "name", "raw", "raw_name")

    def __init__(self, name: str, *, raw: bool = RAW_HEADERS) -> None:
        self.name = name
        self.raw_name = name.encode("ascii")
        self.lower = self.raw_name.lower()
        self.raw = raw

    def stamp_value(self, request: httpx.Request, value: bytes) -> object:
        """Set the header to ``value`` (ASCII); returns the token to hand to :meth:`unstamp`."""
        headers = request.headers
        if self.raw:
            entries: list[tuple[bytes, bytes, bytes]] = headers._list
            if self.lower not in map(_SECOND, entries):  # scanned in C
                stamped = (self.raw_name, self.lower, value)
                entries.append(stamped)
                return stamped
        original = headers.get(self.name, _ABSENT)
        headers[self.name] = value.decode("ascii")
        return original

    def unstamp(self, request: httpx.Request, token: object) -> None:
        """Undo :meth:`stamp_value`."""
        if type(token) is tuple:
            entries = request.headers._list
            if entries[-1] is token:
                entries.pop()
                return
            for index in range(len(entries) - 1, -1, -1):
                if entries[index] is token:
                    del entries[index]
                    return
        elif token is _ABSENT:
            request.headers.pop(self.name, None)
        else:
            request.headers[self.name] = cast("str", token)


class AttemptHeader(StampedHeader):
    """Stamps the attempt number (``1`` on the first) on a request for the duration of one attempt."""

    __slots__ = ("entries", "values")

    def __init__(self, name: str, *, raw: bool = RAW_HEADERS) -> None:
        super().__init__(name, raw=raw)
        self.values = tuple(str(n).encode("ascii") for n in range(_CACHED))
        # The raw entries, built once: the token is the entry itself, found again by identity in one request's list.
        self.entries = tuple((self.raw_name, self.lower, value) for value in self.values)

    def stamp(self, request: httpx.Request, attempt: int) -> object:
        """Set the header for attempt ``attempt``; returns the token to hand to :meth:`unstamp`."""
        if self.raw and attempt < _CACHED:
            entries: list[tuple[bytes, bytes, bytes]] = request.headers._list
            if self.lower not in map(_SECOND, entries):  # scanned in C
                stamped = self.entries[attempt]
                entries.append(stamped)
                return stamped
        return self.stamp_value(request, self.values[attempt] if attempt < _CACHED else b"%d" % attempt)


class DeadlineHeader(StampedHeader):
    """Stamps the time an attempt may take on a request, as a relative budget (the next service starts its own
    clock on arrival, so clock skew between the hosts does not matter).

    ``Request-Deadline-Ms`` (any name but ``grpc-timeout``) carries whole milliseconds, rounded down
    (:func:`stalwart._deadline_headers.format_request_deadline_ms`); ``grpc-timeout`` uses gRPC's format
    (:func:`~stalwart._deadline_headers.format_grpc_timeout`).
    """

    __slots__ = ("format",)

    def __init__(self, name: str, *, raw: bool = RAW_HEADERS) -> None:
        super().__init__(name, raw=raw)
        grpc = self.lower == GRPC_TIMEOUT_HEADER.encode("ascii")
        self.format: Callable[[float], str] = format_grpc_timeout if grpc else format_request_deadline_ms

    def stamp(self, request: httpx.Request, seconds: float) -> object:
        """Set the header to a budget of ``seconds``; returns the token to hand to :meth:`unstamp`."""
        return self.stamp_value(request, self.format(seconds).encode("ascii"))


DRAIN_LIMIT = 65536
"""Bytes of a discarded response's body read before closing it, so its connection goes back to the pool (closing
an unread response closes its connection). Larger or unsized bodies are not read: the connection is dropped."""


def _drainable(response: httpx.Response) -> bool:
    length = response.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) <= DRAIN_LIMIT and not response.is_stream_consumed


async def discard_async(
    response: httpx.Response, within: float | None = None, monotonic: Callable[[], float] = time.monotonic
) -> None:
    """Close a response the caller will not see, draining a small body first to keep its connection alive.

    Args:
        response: the response to close.
        within: seconds the drain may take in all (``None`` or ``inf``: no limit beyond httpx's per-read
            timeouts). A read still running then is cut (a loop timer), and a drain that has not finished by then
            is abandoned: the response is closed unread and its connection dropped. ``0`` or less: closed without
            draining.
        monotonic: the clock ``within`` is measured on, checked between reads (seconds).
    """
    try:
        if _drainable(response) and (within is None or within > 0.0):
            chunks = cast("AsyncGenerator[bytes, None]", response.aiter_raw())  # a generator in httpx
            async with aclosing(chunks):
                if within is None or within == math.inf:
                    async for _ in chunks:
                        pass
                else:
                    end = monotonic() + within
                    async with asyncio.timeout(within):  # a read that stalls (the loop's clock)
                        async for _ in chunks:
                            if monotonic() >= end:  # a body that trickles (the transport's clock)
                                break
    except Exception:  # noqa: S110 - a broken or slow body only means the connection is not reused
        pass
    finally:
        await response.aclose()


def discard_sync(
    response: httpx.Response, within: float | None = None, monotonic: Callable[[], float] = time.monotonic
) -> None:
    """Sync twin of :func:`discard_async`. Sync code cannot be pre-empted: ``within`` is checked between reads,
    each bounded by httpx's read timeout (clamped to the attempt's limit by the driver)."""
    try:
        if _drainable(response) and (within is None or within > 0.0):
            chunks = cast("Generator[bytes, None, None]", response.iter_raw())
            try:
                if within is None or within == math.inf:
                    for _ in chunks:
                        pass
                else:
                    end = monotonic() + within
                    for _ in chunks:
                        if monotonic() >= end:
                            break
            finally:
                chunks.close()
    except Exception:  # noqa: S110 - a broken or slow body only means the connection is not reused
        pass
    finally:
        response.close()


async def close_unread_async(response: httpx.Response) -> None:
    """Close a response whose body failed to read inside the attempt (as ``httpx.AsyncClient.send`` does), so its
    stream and connection are released at once; an error while closing is ignored (the read's error goes on)."""
    try:
        await response.aclose()
    except Exception:  # noqa: S110 - the read's error is the one that matters
        pass


def close_unread_sync(response: httpx.Response) -> None:
    """Sync twin of :func:`close_unread_async`."""
    try:
        response.close()
    except Exception:  # noqa: S110 - the read's error is the one that matters
        pass


def wall_time() -> float:
    """The wall-clock time in POSIX seconds, used only to read an HTTP-date ``Retry-After`` (never for durations)."""
    return datetime.now(UTC).timestamp()


def clamp_timeouts(request: httpx.Request, limit: float) -> None:
    """Clamp httpx's per-phase timeouts of ``request`` (``extensions["timeout"]``: connect/read/write/pool) to
    ``limit`` seconds, the time the attempt may take; a missing or ``None`` phase timeout becomes ``limit``."""
    extensions = request.extensions
    timeouts: dict[str, float | None] | None = extensions.get("timeout")
    if timeouts is None:
        extensions["timeout"] = dict.fromkeys(_TIMEOUT_KEYS, limit)
        return
    for value in timeouts.values():
        if value is None or value > limit:
            extensions["timeout"] = {
                key: limit if value is None or value > limit else value for key, value in timeouts.items()
            }
            return


def expired(attempt: int) -> DeadlineExceeded:
    """The error raised when the ambient deadline has passed before attempt ``attempt`` (nothing is sent)."""
    return DeadlineExceeded(f"the deadline passed before attempt {attempt} could start", timeout=0.0)


def status_error(request: httpx.Request, response: httpx.Response) -> httpx.HTTPStatusError:
    """The error a fallback receives for a final response with a failure status."""
    return httpx.HTTPStatusError(
        f"server error {response.status_code} for {request.method} {request.url}", request=request, response=response
    )


def checked(result: object) -> httpx.Response:
    """A fallback's answer, which must be a response.

    Raises:
        TypeError: it is not an ``httpx.Response``.
    """
    if not isinstance(result, httpx.Response):
        raise TypeError(f"a fallback must return an httpx.Response, got {result!r}")
    return result
