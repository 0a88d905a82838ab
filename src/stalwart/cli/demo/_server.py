"""Serving an ASGI app on loopback with uvicorn, inside the caller's event loop.

:func:`bind_loopback` binds a listening socket on ``127.0.0.1`` port 0 (the kernel picks a free port), so the
address is known before any server runs and nothing races for a port; :func:`serving` runs a uvicorn server on that
socket for the duration of an ``async with`` block and stops it on the way out, also when the block is cancelled.
The socket dies with the process in any case, so an interrupted demo never leaves a port behind.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp

__all__ = ["bind_loopback", "serving", "url_of"]

_HOST = "127.0.0.1"


def bind_loopback() -> socket.socket:
    """A TCP socket bound to a free port on ``127.0.0.1`` and listening (backlog 1024)."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # Nagle's algorithm holds each response body back until the client's delayed ACK (about 40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((_HOST, 0))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@asynccontextmanager
async def serving(app: ASGIApp, sock: socket.socket) -> AsyncIterator[str]:
    """Serve ``app`` on ``sock`` (from :func:`bind_loopback`) in the running loop; yield its base URL.

    On exit the server stops at once: it closes the socket and its connections, and abandons calls still running
    after a second (the loop cancels them when it closes).

    Raises:
        RuntimeError: the server exited during start-up (the cause attached).
    """
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        loop="asyncio",
        http="h11",
        timeout_graceful_shutdown=1,
    )
    url = url_of(sock)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn {url}")
    try:
        while not server.started:
            if task.done():
                raise RuntimeError("the demo's upstream server exited during start-up") from task.exception()
            await asyncio.sleep(0.005)
        yield url
    finally:
        server.should_exit = True
        server.force_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=2.0)
        except Exception:  # a timeout, or an error while stopping: abandon it, the loop cancels it when it closes
            task.cancel()
        sock.close()
