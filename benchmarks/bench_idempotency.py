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

The servers and the client are in ``_idem_fleet.py``, the statistics and tables in ``_idem_report.py``.
``cases()`` also gives ``benchmarks/run.py`` (which imports every ``bench_*.py``) an in-process table: the
middleware with a ``MemoryStore`` around a bare ASGI app, called directly (no network), fresh key and replay.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _harness import Case, Unavailable  # noqa: E402
from _idem_fleet import BODY, SECRET, Connection, Fleet, Server, payment  # noqa: E402
from _idem_report import Report, render  # noqa: E402

GROUP = "idempotency"
BARE_ASGI = "bare ASGI app, one POST (async)"
MIDDLEWARE_FRESH = "IdempotencyMiddleware + MemoryStore, fresh key (async)"
MIDDLEWARE_REPLAY = "IdempotencyMiddleware + MemoryStore, replay (async)"

STORES = ("memory", "sqlite", "sqlite-normal", "redis", "redis-aof", "postgres", "redis+l1", "postgres+l1")
"""Every store configuration, in report order. ``+l1`` turns the middleware's L1 cache on (replay rows only)."""


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
    args = parser.parse_args(argv)
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
