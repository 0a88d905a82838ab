"""The loopback server of the HTTP throughput benchmark: a bare ASGI app run by uvicorn in a subprocess.

``GET /`` answers ``200 ok``. Every request records its client address (host, port); since each TCP connection has
its own client port, the number of distinct addresses is the number of connections the client opened.
``GET /__stats`` returns that number (as a decimal body) and ``POST /__reset`` clears it; neither is counted.
"""

from __future__ import annotations

from typing import Any

_seen: set[tuple[str, int]] = set()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/__stats":
        body = str(len(_seen)).encode()
    elif path == "/__reset":
        _seen.clear()
        body = b"0"
    else:
        client = scope.get("client")
        if client is not None:
            _seen.add((client[0], client[1]))
        body = b"ok"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
