"""``HealthApp``: the seed's ``GET /health/circuits`` endpoint (and ``/health/bulkheads``), as a pure ASGI app.

It serves the snapshot of a :class:`~stalwart.Registry` (default: ``stalwart.registry``) as JSON, in the shape
DESIGN.md pins::

    GET /health/circuits   → {"status": "ok" | "degraded",
                              "circuits": {name: {"state", "failure_rate", "slow_call_rate", "calls", "retry_after"}}}
    GET /health/bulkheads  → {name: {"active", "queued", "available"}}

``/health/circuits`` answers **503** while a breaker created with ``critical=True`` is FORCED_OPEN, or OPEN within
its open period (a load balancer then takes the instance out of rotation), else 200: once the open period has
passed the report shows the breaker HALF_OPEN, so that the instance gets the traffic that probes the dependency.
``status`` is ``"degraded"`` while any breaker is OPEN, HALF_OPEN or FORCED_OPEN. Responses are never cached
(``Cache-Control: no-store``). Health documents are ``application/json``; the 404 (unknown path) and 405 (a method
other than GET or HEAD) answers are RFC 9457 problem documents, ``application/problem+json``.

Mount it anywhere: it answers a path ending in ``/circuits`` or ``/bulkheads`` relative to its mount point
(``root_path``), so ``app.mount("/health", HealthApp())`` (FastAPI, Starlette) and a bare ``HealthApp()`` served
at the root both answer ``/health/circuits``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

from stalwart._registry import Registry

__all__ = ["HealthApp"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

_ALLOWED = (b"GET", b"HEAD")
_PROBLEMS = (404, 405)  # the statuses whose body is a problem document (never a health document)


def _problem(status: int, title: str) -> bytes:
    return json.dumps({"type": "about:blank", "title": title, "status": status}, separators=(",", ":")).encode()


class HealthApp:
    """A pure ASGI app serving a registry's circuit-breaker and bulkhead health as JSON.

    Args:
        registry: the registry to report (default: ``stalwart.registry``, looked up at each request).

    Routes (``GET`` or ``HEAD``; other methods get 405):
        ``…/circuits``: the circuits document; status 503 while a ``critical`` breaker is OPEN (within
            its open period) or FORCED_OPEN.
        ``…/bulkheads``: the bulkheads document; status 200.
        anything else: 404.
    """

    __slots__ = ("_registry",)

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry

    @property
    def registry(self) -> Registry:
        """The registry reported."""
        if self._registry is not None:
            return self._registry
        from stalwart._registry import registry  # noqa: PLC0415 - the process-wide default, looked up late

        return registry

    def __repr__(self) -> str:
        return f"HealthApp(registry={self._registry!r})"

    def render(self, path: str) -> tuple[int, bytes]:
        """The status and JSON body for a request path (relative to the mount point)."""
        route = path.rstrip("/")
        if route.endswith("/circuits"):
            document, critical = self.registry._circuits_report()  # one reading: the status agrees with the body
            status = 503 if critical else 200
        elif route.endswith("/bulkheads"):
            document = self.registry.bulkheads_snapshot()
            status = 200
        else:
            return 404, _problem(404, "Not Found")
        return status, json.dumps(document, separators=(",", ":"), allow_nan=False).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (``http``; ``lifespan`` is acknowledged; ``websocket`` is closed)."""
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        path: str = scope.get("path") or "/"
        root: str = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        method = scope.get("method", "GET").encode()
        extra: list[tuple[bytes, bytes]] = []
        if method not in _ALLOWED:
            status, body = 405, _problem(405, "Method Not Allowed")
            extra.append((b"allow", b"GET, HEAD"))
        else:
            status, body = self.render(path)
        # 404 and 405 bodies are RFC 9457 problem documents; the health documents (200, critical 503) are JSON
        content_type = b"application/problem+json" if status in _PROBLEMS else b"application/json"
        headers = [(b"content-type", content_type), (b"cache-control", b"no-store"), *extra]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == b"HEAD" else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
