"""The servers of ``bench_idempotency.py``: the payments API per store in subprocesses, and a raw HTTP/1.1 client.

Run as a script with ``--serve KIND --fd N`` it serves the payments API for ``KIND`` on the inherited listening
socket ``N`` (that is how :class:`Server` starts it). :class:`Fleet` starts one server per configuration (the store
servers they need included: a private ``redis-server`` for ``redis-aof``) and removes everything on exit: server
processes, the private Redis, the temporary directory, the Redis keys and the PostgreSQL schema of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from _harness import Unavailable

__all__ = ["BODY", "SECRET", "Connection", "Fleet", "Server", "payment"]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = b"bench-idempotency-secret-32-bytes!!"
BODY = b'{"amount":1250,"currency":"EUR","recipient":"bob"}'


# == the server side (a subprocess per configuration) ===============================================================


def _build_app(kind: str, target: str, name: str) -> Any:
    from stalwart.cli.demo._payments_app import create_app  # noqa: PLC0415

    l1_cache = 256 if kind.endswith("+l1") else 0
    kind = kind.removesuffix("+l1")
    if kind == "bare":
        return create_app(idempotency=False)
    if kind == "memory":
        from stalwart.idempotency import MemoryStore  # noqa: PLC0415

        store: Any = MemoryStore()
    elif kind in ("sqlite", "sqlite-normal"):
        from stalwart.idempotency import SQLiteStore  # noqa: PLC0415

        store = SQLiteStore(target, synchronous="NORMAL" if kind == "sqlite-normal" else "FULL")
    elif kind in ("redis", "redis-aof"):
        from stalwart.idempotency.stores.redis import RedisStore  # noqa: PLC0415

        store = RedisStore.from_url(target, prefix=name)
    elif kind == "postgres":
        from stalwart.idempotency.stores.postgres import PostgresStore  # noqa: PLC0415

        store = PostgresStore.from_url(target, schema=name)
    else:
        raise SystemExit(f"unknown store {kind!r}")
    return create_app(store=store, secret=SECRET, l1_cache=l1_cache)


def serve(kind: str, fd: int, target: str, name: str) -> None:
    """Serve the payments API for ``kind`` on the inherited listening socket ``fd`` until SIGTERM."""
    import logging  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    logging.basicConfig(level=logging.ERROR)  # the Redis settings check warns about a server without AOF
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        _build_app(kind, target, name),
        lifespan="on",
        log_level="error",
        access_log=False,
        loop="asyncio",
        http="h11",
        timeout_keep_alive=60,
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


# == the client side ================================================================================================


class Connection:
    """One keep-alive HTTP/1.1 connection; answers must carry ``content-length`` (FastAPI's and replays do)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # asyncio sets TCP_NODELAY
        return cls(reader, writer)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send ``data`` (a whole request); return the status and the header block (the body is read and dropped)."""
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"an answer without content-length: {head[:200]!r}")
        end = head.index(b"\r\n", at + 2)
        await self.reader.readexactly(int(head[at + 17 : end]))
        return int(head[9:12]), head

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def payment(key: bytes, path: bytes = b"/payments") -> bytes:
    """The raw ``POST /payments`` request with ``key``."""
    return (
        b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer bench\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\nidempotency-key: %s\r\n\r\n%s"
        % (path, len(BODY), key, BODY)
    )


STATS = b"GET /stats HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


@dataclass
class Server:
    """A server subprocess for one configuration (see the module docstring)."""

    kind: str
    target: str = ""
    name: str = ""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    unavailable: str | None = None
    keys: Iterator[bytes] = field(
        default_factory=lambda: (b"%s-%d" % (uuid.uuid4().hex[:8].encode(), n) for n in itertools.count())
    )

    def start(self) -> None:
        sock = _listening_socket()
        try:
            self.port = sock.getsockname()[1]
            command = [sys.executable, os.path.abspath(__file__), "--serve", self.kind, "--fd", str(sock.fileno())]
            command += ["--target", self.target, "--name", self.name]
            self.proc = subprocess.Popen(command, pass_fds=[sock.fileno()], stdout=subprocess.DEVNULL)
        finally:
            sock.close()  # the child holds its own copy

    async def wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.kind} server exited with status {self.proc.returncode}")
            try:
                conn = await Connection.open(self.port)
                try:
                    status, _ = await conn.request(STATS)
                finally:
                    await conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"the {self.kind} server did not answer within {timeout:g} s")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def fresh(self) -> bytes:
        return payment(next(self.keys))


# == store availability and the servers' settings ===================================================================


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_settings(url: str) -> str:
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url, socket_timeout=2.0)
    try:
        client.ping()
        settings = {}
        for name in ("appendonly", "appendfsync", "maxmemory-policy"):
            settings.update({_text(k): _text(v) for k, v in client.config_get(name).items()})
        version = _text(client.info("server")["redis_version"])
    finally:
        client.close()
    return f"Redis {version}, " + ", ".join(f"{k} {v}" for k, v in settings.items())


def _postgres_settings(url: str) -> str:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url, connect_timeout=2) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        values = [
            conn.execute(f"SHOW {name}").fetchone() for name in ("fsync", "synchronous_commit", "wal_sync_method")
        ]
    names = ("fsync", "synchronous_commit", "wal_sync_method")
    return f"PostgreSQL {version[0] if version else '?'}, " + ", ".join(
        f"{n} {v[0] if v else '?'}" for n, v in zip(names, values, strict=True)
    )


class PrivateRedis:
    """A ``redis-server`` with the settings the guarantees need (AOF ``always``, ``noeviction``) in a temp dir."""

    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise Unavailable("redis-server is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", directory]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        end = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise Unavailable("the private redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _drop_redis_keys(url: str, prefix: str) -> None:
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url, socket_timeout=5.0)
    try:
        keys = list(client.scan_iter(match=f"{{{prefix}}}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def _drop_schema(url: str, schema: str) -> None:
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class Fleet:
    """The servers of one run: ``bare`` plus one per available store; everything stopped and removed on exit."""

    def __init__(self, stores: list[str]) -> None:
        self.stores = stores
        self.servers: dict[str, Server] = {}
        self.unavailable: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self._tmp = tempfile.mkdtemp(prefix="stalwart-bench-idem-")
        self._private_redis: PrivateRedis | None = None
        self._cleanups: list[Callable[[], None]] = []
        self.fsync_ms: list[float] = []

    def _server(self, kind: str) -> Server:
        if kind.endswith("+l1"):
            server = self._server(kind.removesuffix("+l1"))
            self.notes[kind] = "the same with l1_cache=256 (completed records cached in the server process)"
            return Server(kind, target=server.target, name=server.name)
        run = uuid.uuid4().hex[:10]
        if kind == "bare":
            return Server(kind)
        if kind == "memory":
            return Server(kind)
        if kind in ("sqlite", "sqlite-normal"):
            sync = "NORMAL" if kind == "sqlite-normal" else "FULL"
            self.notes[kind] = f"SQLite {sqlite3.sqlite_version}, WAL, synchronous={sync}, file in the temp dir"
            return Server(kind, target=os.path.join(self._tmp, f"{kind}.sqlite3"))
        if kind == "redis":
            self.notes[kind] = _redis_settings(REDIS_URL) + f" ({REDIS_URL})"
            name = f"stalwart-bench-{run}"
            self._cleanups.append(lambda: _drop_redis_keys(REDIS_URL, name))
            return Server(kind, target=REDIS_URL, name=name)
        if kind == "redis-aof":
            self._private_redis = PrivateRedis(self._tmp)
            self.notes[kind] = _redis_settings(self._private_redis.url) + " (private redis-server, AOF in the temp dir)"
            return Server(kind, target=self._private_redis.url, name="bench")
        if kind == "postgres":
            self.notes[kind] = _postgres_settings(DATABASE_URL) + f" ({DATABASE_URL})"
            schema = f"stalwart_bench_{run}"
            self._cleanups.append(lambda: _drop_schema(DATABASE_URL, schema))
            return Server(kind, target=DATABASE_URL, name=schema)
        raise ValueError(f"unknown store {kind!r}")

    def probe_disk(self, count: int) -> None:
        """Time ``count`` appends of 4 KiB + ``fdatasync`` in the temp dir (what a WAL or AOF commit costs at least)."""
        path = os.path.join(self._tmp, "fsync-probe")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for _ in range(count):
                t0 = time.perf_counter()
                os.write(fd, b"x" * 4096)
                os.fdatasync(fd)
                self.fsync_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            os.close(fd)

    async def __aenter__(self) -> Fleet:
        for kind in ["bare", *self.stores]:
            try:
                server = self._server(kind)
            except Exception as exc:  # a server that is down, a missing binary: that row is not available
                self.unavailable[kind] = f"{type(exc).__name__}: {exc}".strip()
                continue
            server.start()
            self.servers[kind] = server
        for kind, server in list(self.servers.items()):
            try:
                await server.wait_ready()
            except RuntimeError as exc:
                if kind == "bare":
                    raise
                self.unavailable[kind] = str(exc)
                server.stop()
                del self.servers[kind]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self._private_redis is not None:
            self._private_redis.stop()
        for cleanup in self._cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        shutil.rmtree(self._tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="serve the payments API for one benchmark configuration")
    parser.add_argument("--serve", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--target", default="")
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    serve(args.serve, args.fd, args.target, args.name)
