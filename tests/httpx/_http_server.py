"""A scripted HTTP/1.1 server on a loopback port, in a thread, for the transport's integration tests.

Built on h11 (httpx's own HTTP/1.1 engine) over plain sockets, so a test controls exactly what goes on the wire:
a status with headers, a connection dropped before any response, a body cut in the middle, or a response that never
comes. Connections are kept alive between requests, so the tests can also check that the client reuses them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import h11

__all__ = ["Action", "ScriptedServer", "drop", "hang", "respond", "scripted_server", "truncate"]


@dataclass(frozen=True)
class Action:
    """What the server does with one request: ``kind`` is "respond", "drop", "truncate" or "hang"."""

    kind: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def respond(status: int = 200, body: bytes | None = None, **headers: str) -> Action:
    """Answer ``status`` with ``body`` (default ``b"attempt N"``) and ``headers`` (``Retry_After="1"`` →
    ``Retry-After: 1``)."""
    pairs = tuple((name.replace("_", "-"), value) for name, value in headers.items())
    return Action("respond", status, pairs, b"" if body is None else body)


drop = Action("drop")
"""Close the connection after reading the request, without answering."""

truncate = Action("truncate")
"""Send a 200 announcing 100 bytes of body, send 5, then close the connection."""

hang = Action("hang")
"""Never answer (until the server stops)."""


@dataclass
class ScriptedServer:
    """The running server: its URL, and what it saw."""

    url: str
    actions: list[Action]
    requests: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)
    connections: set[int] = field(default_factory=set)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def count(self) -> int:
        """Requests received so far."""
        with self.lock:
            return len(self.requests)

    def attempts(self) -> list[str | None]:
        """The ``Stalwart-Attempt`` header of every request received."""
        with self.lock:
            return [headers.get("stalwart-attempt") for _, _, _, headers in self.requests]

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [body for _, _, body, _ in self.requests]

    def _next_action(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, Action]:
        with self.lock:
            self.requests.append((method, target, body, headers))
            n = len(self.requests)
        return n, self.actions[min(n, len(self.actions)) - 1]

    def _recv(self, sock: socket.socket) -> bytes:
        """The next bytes from ``sock`` (``b""`` when the peer closed it or the server stops)."""
        while not self.stopping.is_set():
            try:
                return sock.recv(65536)
            except TimeoutError:
                continue
        return b""

    def _serve(self, sock: socket.socket, port: int) -> None:
        with self.lock:
            self.connections.add(port)
        conn = h11.Connection(h11.SERVER)
        sock.settimeout(0.2)
        try:
            request: h11.Request | None = None
            body = b""
            while not self.stopping.is_set():
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(self._recv(sock))
                elif isinstance(event, h11.Request):
                    request, body = event, b""
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage) and request is not None:
                    headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                    n, action = self._next_action(request.method.decode(), request.target.decode(), body, headers)
                    if not self._act(conn, sock, action, n):
                        return
                    conn.start_next_cycle()
                else:  # ConnectionClosed, PAUSED
                    return
        except (OSError, h11.ProtocolError):
            return
        finally:
            sock.close()

    def _act(self, conn: h11.Connection, sock: socket.socket, action: Action, n: int) -> bool:
        """Carry out ``action``; False when the connection is finished."""
        if action.kind == "drop":
            return False
        if action.kind == "hang":
            self.stopping.wait(30.0)
            return False
        if action.kind == "truncate":
            head = h11.Response(status_code=200, headers=[("Content-Length", "100")])
            sock.sendall(conn.send(head) + conn.send(h11.Data(data=b"trunc")))
            return False
        body = action.body or f"attempt {n}".encode()
        headers = [*action.headers, ("Content-Length", str(len(body)))]
        data = conn.send(h11.Response(status_code=action.status, headers=headers))
        data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        sock.sendall(data)
        return True


@contextmanager
def scripted_server(actions: Iterable[Action]) -> Iterator[ScriptedServer]:
    """Run a :class:`ScriptedServer` on a free loopback port; each request takes the next action (the last one
    repeats)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    server = ScriptedServer(f"http://127.0.0.1:{port}", list(actions))
    threads: list[threading.Thread] = []

    def accept() -> None:
        while not server.stopping.is_set():
            try:
                sock, address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=server._serve, args=(sock, address[1]), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        server.stopping.set()
        acceptor.join(5.0)
        listener.close()
        for thread in threads:
            thread.join(5.0)


def free_port() -> int:
    """A loopback port nobody listens on (for connection-refused tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
