"""Route resolution for the idempotency middleware: per-route settings, path templates, decorated endpoints,
and the request-body helpers (buffering with a limit, replaying it to the app)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._fingerprint import header_values
from ._options import IdempotencyConfig
from ._replay import HeaderFilter

__all__ = ["NO_ROUTE", "TOO_LARGE", "Route", "compile_template", "find_endpoint", "read_body", "replaying_receive"]

logger = logging.getLogger("stalwart")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

TOO_LARGE = object()
"""Returned by :func:`read_body` when the body exceeds the limit."""

NO_ROUTE = object()
"""Returned by :func:`find_endpoint` when the router will answer without running an endpoint."""


class Route:
    """An :class:`IdempotencyConfig` with its durations as floats and its helpers built once."""

    def __init__(self, cfg: IdempotencyConfig, *, marker: bool) -> None:
        self.cfg = cfg
        self.marker = marker
        self.methods = cfg.methods
        self.fingerprint = cfg.fingerprint
        self.retention = float(cfg.retention)  # type: ignore[arg-type]  # normalised by __post_init__
        self.lease_ttl = float(cfg.lease_ttl)  # type: ignore[arg-type]
        self.heartbeat_every = float(cfg.heartbeat_every)  # type: ignore[arg-type]
        self.wait_timeout = float(cfg.wait_timeout)  # type: ignore[arg-type]
        self.retry_after_cap = float(cfg.retry_after_cap)  # type: ignore[arg-type]
        self.max_capture_duration = float(cfg.max_capture_duration)  # type: ignore[arg-type]
        self.store_timeout = float(cfg.store_timeout)  # type: ignore[arg-type]
        self.completion_budget = float(cfg.completion_budget)  # type: ignore[arg-type]
        self.completion_attempts = cfg.completion_attempts
        self.max_stored_body = cfg.max_stored_body
        self.release_statuses = cfg.release_statuses
        self.store_5xx = cfg.store_5xx
        self.release_on_exception = cfg.release_on_exception
        self.retryable_exceptions = cfg.retryable_exceptions
        self.reclaim = cfg.reclaim_on_lease_expiry
        self.mark_first_response = cfg.mark_first_response
        self.replay_header = cfg.replay_header.lower().encode()
        self.header_filter = HeaderFilter(cfg.replay_header, cfg.replay_headers_allowed)
        self.warn_streams = True
        self.transactional = cfg.transactional


def compile_template(template: str) -> tuple[frozenset[str] | None, re.Pattern[str]]:
    method, _, path = template.strip().rpartition(" ")
    if not path.startswith("/"):
        raise ValueError(f"routes keys must look like 'POST /payments/{{id}}', got {template!r}")
    pattern = ""
    for literal, name, converter in re.findall(r"([^{]*)(?:\{(\w+)(?::(\w+))?\})?", path):
        pattern += re.escape(literal)
        if name:
            pattern += ".*" if converter == "path" else "[^/]+"
    methods = frozenset(m.upper() for m in method.replace(",", " ").split()) or None
    return methods, re.compile(pattern + r"\Z")


def find_endpoint(scope: Scope, app: Any = None) -> Any:
    """The endpoint a Starlette/FastAPI router would call for ``scope``.

    Returns the endpoint, :data:`NO_ROUTE` when the app has a router and no route fully matches (the router will
    answer 404, 405 or a redirect without running any endpoint), or None when it cannot tell (not a Starlette
    app, or a mounted app it cannot see into). The router comes from ``scope["app"]`` (set by Starlette before its
    middleware stack runs) or, when the middleware wraps the application from outside, from ``app``.
    """
    app = scope.get("app") or app
    routes = getattr(getattr(app, "router", None), "routes", None)
    return _match_routes(routes, scope, 0) if routes else None


def _match_routes(routes: Any, scope: Scope, depth: int) -> Any:
    if depth > 8:
        return None
    for route in routes:
        matches = getattr(route, "matches", None)
        if matches is None:
            continue
        try:
            match, child = matches(scope)
        except Exception:  # a route type we do not understand: let the router decide later
            logger.debug("idempotency: cannot match route %r", route, exc_info=True)
            continue
        if getattr(match, "name", "") != "FULL":
            continue
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None:
            return endpoint
        inner = getattr(route, "routes", None)
        if inner:
            return _match_routes(inner, {**scope, **child}, depth + 1)
        return None
    return NO_ROUTE


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | object | None:
    for value in header_values(scope["headers"], b"content-length"):
        try:
            if int(value) > limit:
                return TOO_LARGE
        except ValueError:
            pass
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying_receive(body: bytes, receive: Receive, *, shield: bool) -> Receive:
    """Give the app the buffered body, then block (``shield``) or defer to the server's ``receive``."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if shield:
            await asyncio.get_running_loop().create_future()  # never resolves; cancelled with the caller
        return await receive()

    return replay
