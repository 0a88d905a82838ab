"""Idempotency benchmarks: what ``IdempotencyMiddleware`` adds to a request, per store, on loopback.

Usage (standalone; the store servers are the ones of DESIGN.md §4, ``REDIS_URL`` and ``DATABASE_URL``)::

    .venv/bin/python benchmarks/bench_idempotency.py                      # every store (a few minutes)
    .venv/bin/python benchmarks/bench_idempotency.py --stores memory,sqlite --rounds 10
    .venv/bin/python benchmarks/bench_idempotency.py --markdown benchmarks/RESULTS-idempotency.md
    .venv/bin/python benchmarks/bench_idempotency.py --tiny               # seconds: checks that everything runs

What runs. The seed's payments API (``stalwart.cli.demo._payments_app``: FastAPI, pydantic validation, a bearer
token layer, ``POST /payments`` answering 201) is served by uvicorn (h11, asyncio loop, one worker), one server
process per configuration, each on a loopback socket bound here and handed over (no port race):

* ``bare``: the app without the middleware (the baseline: the handler itself);
* ``memory``, ``sqlite`` (``synchronous=FULL``, the default), ``sqlite-normal`` (``synchronous="NORMAL"``),
  ``redis`` (the server at ``REDIS_URL`` as it is configured), ``redis-aof`` (a private ``redis-server`` with
  ``appendonly yes``, ``appendfsync always``, ``maxmemory-policy noeviction``: the settings the guarantees need)
  and ``postgres`` (``DATABASE_URL``): the app behind ``IdempotencyMiddleware`` on that store, default settings
  (strict mode, 30 s lease, 24 h retention, no L1 cache);
* ``redis+l1``, ``postgres+l1``: the same with ``l1_cache=256`` (completed records kept in the server process), for
  the replay rows only (a fresh key never hits the cache).

The client is a minimal HTTP/1.1 client on asyncio streams (keep-alive, ``TCP_NODELAY``), so that the client's own
cost is small next to the server's and the numbers say what the server does.

Concurrency 1 (latency). Every round sends ``--per-round`` requests one after the other to every row: ``bare``, and
per store ``fresh`` (a new ``Idempotency-Key`` per request: claim, handler, completion) and ``replay`` (the same
key and body every time: the stored response replayed). Rows run back to back; their order rotates from round to
round and odd rounds run reversed, so drift hits every row alike. Reported: p50 and p90 over all samples, and
**added p50**: the median over rounds of (the row's p50 in the round - the bare app's p50 in the same round).

Concurrency 50 (throughput). Every round sends ``--tp-requests`` fresh-key requests over ``--concurrency``
keep-alive connections to every server (order rotated); reported: median requests/s and the median over rounds of
the per-round ratio to the bare app.

Targets (issue 5): added p50 at concurrency 1 under 1 ms for Redis, 2 ms for SQLite, 3 ms for PostgreSQL; replays
at least as fast as the handler (replay p50 <= the bare app's p50, per round, median).

``cases()`` also gives ``benchmarks/run.py`` (which imports every ``bench_*.py``) an in-process table: the
middleware with a ``MemoryStore`` around a bare ASGI app, called directly (no network), fresh key and replay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import itertools
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _harness import Case, Unavailable  # noqa: E402

GROUP = "idempotency"
BARE_ASGI = "bare ASGI app, one POST (async)"
MIDDLEWARE_FRESH = "IdempotencyMiddleware + MemoryStore, fresh key (async)"
MIDDLEWARE_REPLAY = "IdempotencyMiddleware + MemoryStore, replay (async)"

STORES = ("memory", "sqlite", "sqlite-normal", "redis", "redis-aof", "postgres", "redis+l1", "postgres+l1")
"""Every store configuration, in report order. ``+l1`` turns the middleware's L1 cache on (replay rows only)."""

TARGET_ADDED_MS = {"redis": 1.0, "redis-aof": 1.0, "sqlite": 2.0, "sqlite-normal": 2.0, "postgres": 3.0}
"""Issue 5's added-latency targets at p50, concurrency 1 (fresh keys), in ms."""

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = b"bench-idempotency-secret-32-bytes!!"
BODY = b'{"amount":1250,"currency":"EUR","recipient":"bob"}'


# == in-process rows for run.py =====================================================================================


def _bare_asgi() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _asgi_caller(app: Any, keys: Iterator[bytes]) -> Any:
    message = {"type": "http.request", "body": BODY, "more_body": False}
    status = [0]
    base_headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ]

    async def receive() -> dict[str, Any]:
        return message

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            status[0] = msg["status"]

    async def case() -> int:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/payments",
            "raw_path": b"/payments",
            "query_string": b"",
            "headers": [*base_headers, (b"idempotency-key", next(keys))],
            "state": {"principal": "bench"},
        }
        await app(scope, receive, send)
        return status[0]

    return case


def _middleware(app: Any) -> Any:
    try:
        from stalwart.idempotency import IdempotencyMiddleware, MemoryStore, state_resolver  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - the module exists since issue 5
        raise Unavailable(f"stalwart.idempotency not available: {exc}") from exc
    return IdempotencyMiddleware(
        app,
        store=MemoryStore(),
        resolver=state_resolver(principal="principal", tenant=None),
        secret=SECRET,
        purge_interval=None,
    )


def _fresh_keys() -> Iterator[bytes]:
    return (b"k%d" % n for n in itertools.count())


def cases() -> list[Case]:
    """In-process rows for ``run.py``: the middleware (MemoryStore) around a bare ASGI app, no network."""
    return [
        Case(GROUP, BARE_ASGI, "async", lambda: _asgi_caller(_bare_asgi(), _fresh_keys()), expect=201),
        Case(
            GROUP,
            MIDDLEWARE_FRESH,
            "async",
            lambda: _asgi_caller(_middleware(_bare_asgi()), _fresh_keys()),
            baseline=BARE_ASGI,
            expect=201,
            stalwart=True,
        ),
        Case(
            GROUP,
            MIDDLEWARE_REPLAY,
            "async",
            lambda: _asgi_caller(_middleware(_bare_asgi()), itertools.repeat(b"replayed-key")),
            baseline=BARE_ASGI,
            expect=201,
            stalwart=True,
        ),
    ]


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

    def disk_note(self) -> str:
        s = self.fsync_ms
        return (
            f"disk ({tempfile.gettempdir()}): 4 KiB append + fdatasync, {len(s)} probes spread over the latency "
            f"rounds: p50 {_pct(s, 0.5):.2f} ms, p90 {_pct(s, 0.9):.2f} ms, max {max(s):.2f} ms"
        )

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


# == measurements ===================================================================================================


@dataclass
class Row:
    """One latency row: a server and a request pattern, with its samples (ms) per round."""

    kind: str
    mode: str  # "handler" (bare), "fresh" or "replay"
    server: Server
    rounds: list[list[float]] = field(default_factory=list)
    conn: Connection | None = None
    replay_request: bytes = b""

    @property
    def label(self) -> str:
        return "bare app (the handler)" if self.mode == "handler" else f"{self.kind}, {self.mode} key"

    def request(self) -> bytes:
        return self.replay_request if self.mode == "replay" else self.server.fresh()

    def check(self, status: int, head: bytes) -> None:
        replayed = b"\r\nidempotent-replayed: true" in head.lower()
        if status != 201 or replayed != (self.mode == "replay"):
            raise RuntimeError(f"{self.label}: unexpected answer {head[:300]!r}")

    @property
    def samples(self) -> list[float]:
        return [s for r in self.rounds for s in r]


def _order(items: list[Any], r: int) -> list[Any]:
    k = r % len(items)
    out = items[k:] + items[:k]
    return out[::-1] if r % 2 else out


async def measure_latency(fleet: Fleet, *, rounds: int, per_round: int, warmup: int) -> list[Row]:
    """Concurrency 1: interleaved rounds of ``per_round`` sequential requests per row."""
    rows = [Row("bare", "handler", fleet.servers["bare"])]
    for kind in fleet.stores:
        if kind in fleet.servers:
            modes = ("replay",) if kind.endswith("+l1") else ("fresh", "replay")
            rows += [Row(kind, mode, fleet.servers[kind]) for mode in modes]
    try:
        for row in rows:
            row.conn = await Connection.open(row.server.port)
            if row.mode == "replay":
                row.replay_request = payment(b"replay-" + uuid.uuid4().hex.encode())
                status, head = await row.conn.request(row.replay_request)  # the first execution
                if status != 201:
                    raise RuntimeError(f"{row.label}: priming answered {head[:300]!r}")
            for _ in range(warmup):
                row.check(*await row.conn.request(row.request()))
        for r in range(rounds):
            print(f"  latency round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            gc.collect()
            for row in _order(rows, r):
                assert row.conn is not None
                samples = []
                for _ in range(per_round):
                    data = row.request()
                    t0 = time.perf_counter_ns()
                    status, head = await row.conn.request(data)
                    samples.append((time.perf_counter_ns() - t0) / 1e6)
                    row.check(status, head)
                row.rounds.append(samples)
            fleet.probe_disk(5)
    finally:
        for row in rows:
            if row.conn is not None:
                await row.conn.close()
    return rows


@dataclass
class ThroughputRow:
    kind: str
    rps: list[float] = field(default_factory=list)


async def _throughput_round(server: Server, requests: int, concurrency: int) -> float:
    conns = [await Connection.open(server.port) for _ in range(concurrency)]
    remaining = [requests]

    async def worker(conn: Connection) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            status, head = await conn.request(server.fresh())
            if status != 201:
                raise RuntimeError(f"{server.kind}: unexpected answer {head[:300]!r}")

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(conn) for conn in conns))
        return requests / (time.perf_counter() - t0)
    finally:
        for conn in conns:
            await conn.close()


async def measure_throughput(fleet: Fleet, *, rounds: int, requests: int, concurrency: int) -> list[ThroughputRow]:
    """Concurrency ``concurrency``: fresh-key requests per server, rounds interleaved."""
    kinds = [kind for kind in ["bare", *fleet.stores] if kind in fleet.servers and not kind.endswith("+l1")]
    rows = [ThroughputRow(kind) for kind in kinds]
    for row in rows:  # warm-up: open the pools (PostgreSQL, Redis) to their working size
        await _throughput_round(fleet.servers[row.kind], min(requests, 2 * concurrency), concurrency)
    for r in range(rounds):
        print(f"  throughput round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        gc.collect()
        for row in _order(rows, r):
            row.rps.append(await _throughput_round(fleet.servers[row.kind], requests, concurrency))
    return rows


# == report =========================================================================================================


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def _added(row: Row, bare: Row) -> float:
    return statistics.median(
        statistics.median(a) - statistics.median(b) for a, b in zip(row.rounds, bare.rounds, strict=True)
    )


def _replay_ratio(row: Row, bare: Row) -> float:
    return statistics.median(
        statistics.median(a) / statistics.median(b) for a, b in zip(row.rounds, bare.rounds, strict=True)
    )


@dataclass
class Report:
    latency: list[Row]
    throughput: list[ThroughputRow]
    fleet: Fleet
    settings: dict[str, Any]

    def latency_table(self) -> list[list[str]]:
        bare = self.latency[0]
        table = [["row", "p50", "p90", "added p50", "vs handler"]]
        for row in self.latency:
            cells = [row.label, f"{_pct(row.samples, 0.5):.2f} ms", f"{_pct(row.samples, 0.9):.2f} ms"]
            if row is bare:
                cells += ["(baseline)", ""]
            else:
                cells += [f"{_added(row, bare):+.2f} ms", f"{_replay_ratio(row, bare):.2f}x"]
            table.append(cells)
        return table

    def throughput_table(self) -> list[list[str]]:
        bare = self.throughput[0]
        table = [["server", "requests/s", "x bare"]]
        for row in self.throughput:
            ratio = statistics.median(a / b for a, b in zip(row.rps, bare.rps, strict=True))
            name = "bare app" if row.kind == "bare" else row.kind
            table.append([name, f"{statistics.median(row.rps):,.0f}", "(baseline)" if row is bare else f"{ratio:.2f}"])
        return table

    def targets(self) -> list[tuple[str, str, str]]:
        """(status, target, detail) lines."""
        out = []
        bare = self.latency[0]
        by = {(row.kind, row.mode): row for row in self.latency}
        for kind in self.fleet.stores:
            if kind not in TARGET_ADDED_MS:
                continue
            limit = TARGET_ADDED_MS[kind]
            row = by.get((kind, "fresh"))
            name = f"{kind}: added p50 (fresh key, concurrency 1) < {limit:g} ms"
            if row is None:
                out.append(("SKIP", name, self.fleet.unavailable.get(kind, "not run")))
                continue
            added = _added(row, bare)
            out.append(("PASS" if added < limit else "FAIL", name, f"{added:.2f} ms"))
        for kind in self.fleet.stores:
            row = by.get((kind, "replay"))
            name = f"{kind}: replay p50 <= handler p50"
            if row is None:
                out.append(("SKIP", name, self.fleet.unavailable.get(kind, "not run")))
                continue
            ratio = _replay_ratio(row, bare)
            out.append(("PASS" if ratio <= 1.0 else "FAIL", name, f"{ratio:.2f}x the bare app"))
        return out

    def environment(self) -> list[str]:
        lines = [
            f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
            "settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()),
        ]
        if self.fleet.fsync_ms:
            lines.append(self.fleet.disk_note())
        lines += [f"{kind}: {note}" for kind, note in self.fleet.notes.items()]
        lines += [f"{kind}: not available ({why})" for kind, why in self.fleet.unavailable.items()]
        return lines


def _text_table(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "|".join("---" for _ in table[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


def render(report: Report, *, markdown: bool = False) -> str:
    s = report.settings
    table = _md_table if markdown else _text_table
    heading = "### " if markdown else ""
    parts = [
        ("- " if markdown else "") + ("\n- " if markdown else "\n").join(report.environment()),
        f"{heading}Concurrency 1: latency of one POST /payments, {s['rounds']} rounds x {s['per_round']} "
        "requests per row",
        table(report.latency_table()),
        f"{heading}Concurrency {s['concurrency']}: fresh keys, {s['tp_rounds']} rounds x {s['tp_requests']} "
        "requests per server",
        table(report.throughput_table()),
        f"{heading}Targets",
        "\n".join(
            ("- " if markdown else "") + f"{status}  {name}: {detail}" for status, name, detail in report.targets()
        ),
    ]
    return "\n\n".join(parts) + "\n"


# == main ===========================================================================================================


async def run(stores: list[str], settings: dict[str, Any]) -> Report:
    async with Fleet(stores) as fleet:
        latency = await measure_latency(
            fleet, rounds=settings["rounds"], per_round=settings["per_round"], warmup=settings["warmup"]
        )
        throughput = await measure_throughput(
            fleet, rounds=settings["tp_rounds"], requests=settings["tp_requests"], concurrency=settings["concurrency"]
        )
        return Report(latency, throughput, fleet, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default=",".join(STORES), help=f"comma-separated, from {', '.join(STORES)}")
    parser.add_argument("--rounds", type=int, default=20, help="latency rounds (default 20)")
    parser.add_argument("--per-round", type=int, default=25, help="sequential requests per row and round (25)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per row first (50)")
    parser.add_argument("--tp-rounds", type=int, default=5, help="throughput rounds (default 5)")
    parser.add_argument("--tp-requests", type=int, default=1000, help="requests per throughput round (1000)")
    parser.add_argument("--concurrency", type=int, default=50, help="connections in the throughput rounds (50)")
    parser.add_argument("--tiny", action="store_true", help="a few requests only: checks that everything runs")
    parser.add_argument("--markdown", help="also write the report as Markdown to this path")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--target", default="", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.fd, args.target, args.name)
        return 0
    stores = [s for s in args.stores.split(",") if s]
    unknown = set(stores) - set(STORES)
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    settings = {
        "rounds": 2 if args.tiny else args.rounds,
        "per_round": 3 if args.tiny else args.per_round,
        "warmup": 2 if args.tiny else args.warmup,
        "tp_rounds": 1 if args.tiny else args.tp_rounds,
        "tp_requests": 20 if args.tiny else args.tp_requests,
        "concurrency": 5 if args.tiny else args.concurrency,
    }
    report = asyncio.run(run(stores, settings))
    print(render(report))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write("# Idempotency benchmarks\n\n")
            f.write(f"`benchmarks/bench_idempotency.py` ({' '.join(sys.argv[1:]) or 'defaults'}); method in the ")
            f.write("script's docstring.\n\n")
            f.write(render(report, markdown=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
