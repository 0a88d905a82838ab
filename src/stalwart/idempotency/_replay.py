"""Response capture filtering, replays and problem responses (spec §2.10, §2.11).

Headers are kept as raw ordered ``(name, value)`` byte pairs: never a dict, never split on commas. At capture time
hop-by-hop headers, headers regenerated per response (``date``, ``server``, ``x-request-id``, ``traceparent``),
``content-length`` (recomputed on replay; a HEAD response's own is kept, since it states the length of a GET's
body) and, unless allowed, ``set-cookie``, ``x-ratelimit-*`` and
``retry-after`` are dropped; everything else (``location``, ``etag``, ``link``, ``content-type`` …) is replayed
exactly, with ``Idempotent-Replayed: true`` added.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from ._options import DEFAULT_DENIED_REPLAY_HEADERS
from ._record import Record

__all__ = [
    "BODY_OMITTED_HEADER",
    "HeaderFilter",
    "ProblemFactory",
    "Response",
    "replay_response",
    "send_response",
]

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Response = tuple[int, list[tuple[bytes, bytes]], bytes]
"""``(status, headers, body)`` ready to send."""

BODY_OMITTED_HEADER = b"idempotency-body-omitted"

_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"proxy-connection"}
)
_NO_CONTENT = frozenset({204, 304})
"""Statuses (besides 1xx) whose responses carry no content and no recomputed ``content-length``."""
_REGENERATED = frozenset({b"date", b"server", b"x-request-id", b"traceparent", b"content-length"})


class HeaderFilter:
    """Decides which captured response headers are stored for replay.

    Args:
        replay_header: the replay marker's name (never stored; re-added on replay).
        allowed: lower-case names exempted from the default deny list.
    """

    __slots__ = ("_denied_exact", "_denied_prefixes", "_dropped")

    def __init__(self, replay_header: str, allowed: frozenset[str] = frozenset()) -> None:
        denied = {d for d in DEFAULT_DENIED_REPLAY_HEADERS if d not in allowed}
        self._denied_exact = frozenset(d.encode() for d in denied if not d.endswith("*"))
        self._denied_prefixes = tuple(d[:-1].encode() for d in denied if d.endswith("*"))
        self._dropped = _HOP_BY_HOP | _REGENERATED | {replay_header.lower().encode(), BODY_OMITTED_HEADER}

    def keep(self, name: bytes, *, head: bool = False) -> bool:
        """True when a header named ``name`` (any case) is stored and replayed (``head``: in a HEAD response)."""
        lower = name.lower()
        if head and lower == b"content-length":
            return True  # the length of the body a GET would carry: nothing to recompute it from
        if lower in self._dropped or lower in self._denied_exact or lower.startswith(b"proxy-"):
            return False
        return not (self._denied_prefixes and lower.startswith(self._denied_prefixes))

    def filter(self, headers: list[tuple[bytes, bytes]], *, head: bool = False) -> tuple[tuple[bytes, bytes], ...]:
        """The stored subset of ``headers``, order and duplicates preserved.

        ``head``: the response answers a HEAD request. Its ``content-length`` states the length of the body a GET
        would have had, not of the (absent) body, so it is stored as it is instead of being recomputed on replay.
        """
        return tuple((bytes(n), bytes(v)) for n, v in headers if self.keep(n, head=head))


def replay_response(record: Record, replay_header: bytes) -> Response:
    """The replay of a COMPLETED record: exact status and body, stored headers, recomputed length, the marker.

    A record whose body was omitted replays its status and headers with an empty body and
    ``Idempotency-Body-Omitted: true``. Statuses without content (1xx, 204, 304) get no ``content-length``: RFC 9110
    §8.6 forbids it on 1xx and 204, and on a 304 it would have to state the length of a 200, not 0. A record that
    stored its own ``content-length`` (a HEAD response, see :meth:`HeaderFilter.filter`) replays it unchanged.
    """
    status = record.status
    assert status is not None
    headers = list(record.headers)
    body = record.body
    if record.body_omitted:
        headers.append((BODY_OMITTED_HEADER, b"true"))
        body = b""
    kept_length = any(name.lower() == b"content-length" for name, _ in headers)
    if status >= 200 and status not in _NO_CONTENT and not kept_length:
        headers.append((b"content-length", str(len(body)).encode()))
    headers.append((replay_header, b"true"))
    return status, headers, body


class ProblemFactory:
    """Builds the ``application/problem+json`` answers of spec §2.11 (with ``Cache-Control: no-store``).

    Args:
        base: the problem type URI prefix; the type is ``base + name``.
    """

    __slots__ = ("base",)

    def __init__(self, base: str) -> None:
        self.base = base

    def build(self, status: int, name: str, title: str, detail: str | None = None, **extra: Any) -> Response:
        """A problem response; ``extra`` members are added to the JSON body."""
        doc: dict[str, Any] = {"type": self.base + name, "title": title, "status": status}
        if detail:
            doc["detail"] = detail
        doc.update(extra)
        body = json.dumps(doc, separators=(",", ":")).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(body)).encode()),
        ]
        return status, headers, body


async def send_response(send: Send, response: Response, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Send ``response`` as one ``http.response.start`` and one final ``http.response.body`` message."""
    status, headers, body = response
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra_headers]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
