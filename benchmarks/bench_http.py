"""HTTP: per-request cost over ``httpx.MockTransport``, and loopback throughput against a real local server.

Per-request rows (sync and async; a ``GET`` answered ``200`` by a mock handler, no network):
plain httpx over ``MockTransport`` (the baseline of this table); stalwart ``AsyncResilientTransport`` /
``ResilientTransport`` wrapping the same ``MockTransport`` with its default ``ResilienceConfig``; httpx-retries
``RetryTransport`` wrapping it; tenacity ``retry(stop=stop_after_attempt(3))`` around ``client.get``.

Throughput (async only): uvicorn serves :mod:`_server` in a subprocess on a free loopback port; 50 tasks share one
client and issue ``GET /`` until the round's request count is reached. Clients: plain ``httpx.AsyncClient()`` and
``httpx.AsyncClient(transport=AsyncResilientTransport(config=...))`` with a bulkhead of at least the concurrency, as
users build them; and the same two with a pool of exactly ``concurrency`` connections all kept alive, which takes
the pool's timing-dependent connection churn out of the comparison. Every round runs every client once (order rotated
by round), each with a fresh client (fresh pool). Reported: median requests/s over the rounds, and the TCP
connections each client opened (counted server-side as distinct client ports).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import tenacity
from _common import stalwart_name
from _harness import Case, Unavailable
from httpx_retries import RetryTransport

GROUP = "http"
HTTP_REPEAT = 3
"""Chunks per round of the per-request table: a difference of a few µs on ~70 µs needs more paired samples."""

PLAIN_ASYNC = "httpx + MockTransport (async)"
STALWART_ASYNC = "stalwart AsyncResilientTransport (async)"
RETRIES_ASYNC = "httpx-retries RetryTransport (async)"
TENACITY_ASYNC = "tenacity around client.get (async)"
PLAIN_SYNC = "httpx + MockTransport (sync)"
STALWART_SYNC = "stalwart ResilientTransport (sync)"
RETRIES_SYNC = "httpx-retries RetryTransport (sync)"
TENACITY_SYNC = "tenacity around client.get (sync)"

URL = "http://bench.local/items"
CONCURRENCY = 50
HERE = os.path.dirname(os.path.abspath(__file__))


def _handler(request: Any) -> Any:

    return httpx.Response(200, content=b"ok")


def _mock() -> Any:

    return httpx.MockTransport(_handler)


def resilience_config(min_concurrent: int | None = None) -> Any:
    """A default ``ResilienceConfig``, its bulkhead widened to at least ``min_concurrent`` if it is narrower."""
    config_cls = stalwart_name("ResilienceConfig")
    config = config_cls()
    if min_concurrent is None:
        return config
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if "concurren" in f.name and isinstance(value, int) and value < min_concurrent:
            changes[f.name] = min_concurrent
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            inner = {
                g.name: min_concurrent
                for g in dataclasses.fields(value)
                if "concurren" in g.name
                and isinstance(getattr(value, g.name), int)
                and getattr(value, g.name) < min_concurrent
            }
            if inner:
                changes[f.name] = dataclasses.replace(value, **inner)
    return dataclasses.replace(config, **changes) if changes else config


# --- per request --------------------------------------------------------------------------------------------------


def _async_getter(client: Any) -> Any:
    get = client.get

    async def case() -> int:
        response = await get(URL)
        return int(response.status_code)

    return case


def _sync_getter(client: Any) -> Any:
    get = client.get

    def case() -> int:
        return int(get(URL).status_code)

    return case


def _plain_async() -> Any:

    return _async_getter(httpx.AsyncClient(transport=_mock()))


def _stalwart_async() -> Any:

    transport = stalwart_name("AsyncResilientTransport")(_mock(), config=resilience_config())
    return _async_getter(httpx.AsyncClient(transport=transport))


def _retries_async() -> Any:

    return _async_getter(httpx.AsyncClient(transport=RetryTransport(transport=_mock())))


def _tenacity_async() -> Any:

    client = httpx.AsyncClient(transport=_mock())
    return tenacity.retry(stop=tenacity.stop_after_attempt(3))(_async_getter(client))


def _plain_sync() -> Any:

    return _sync_getter(httpx.Client(transport=_mock()))


def _stalwart_sync() -> Any:

    transport = stalwart_name("ResilientTransport")(_mock(), config=resilience_config())
    return _sync_getter(httpx.Client(transport=transport))


def _retries_sync() -> Any:

    return _sync_getter(httpx.Client(transport=RetryTransport(transport=_mock())))


def _tenacity_sync() -> Any:

    client = httpx.Client(transport=_mock())
    return tenacity.retry(stop=tenacity.stop_after_attempt(3))(_sync_getter(client))


def cases() -> list[Case]:
    """Every per-request row of this module (the throughput benchmark is :func:`throughput`)."""
    rows: list[tuple[str, str, Callable[[], Any], bool]] = [
        (PLAIN_ASYNC, "async", _plain_async, False),
        (STALWART_ASYNC, "async", _stalwart_async, True),
        (RETRIES_ASYNC, "async", _retries_async, False),
        (TENACITY_ASYNC, "async", _tenacity_async, False),
        (PLAIN_SYNC, "sync", _plain_sync, False),
        (STALWART_SYNC, "sync", _stalwart_sync, True),
        (RETRIES_SYNC, "sync", _retries_sync, False),
        (TENACITY_SYNC, "sync", _tenacity_sync, False),
    ]
    out = []
    for name, mode, make, stalwart in rows:
        baseline = None if name in (PLAIN_ASYNC, PLAIN_SYNC) else (PLAIN_ASYNC if mode == "async" else PLAIN_SYNC)
        out.append(Case(GROUP, name, mode, make, baseline=baseline, expect=200, stalwart=stalwart, repeat=HTTP_REPEAT))
    return out


# --- loopback throughput ------------------------------------------------------------------------------------------


@dataclass
class ThroughputRow:
    """Rounds of one client against the loopback server."""

    name: str
    rps: list[float] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def median_rps(self) -> float:
        return statistics.median(self.rps)

    @property
    def median_connections(self) -> float:
        return statistics.median(self.connections)


@dataclass
class ThroughputResult:
    """The loopback benchmark's outcome: the rows by name, and how it was run."""

    rows: dict[str, ThroughputRow]
    requests: int
    rounds: int
    concurrency: int
    error: str | None = None


class Server:
    """uvicorn serving :mod:`_server` in a subprocess on a free loopback port.

    The port is found by binding port 0 and closing the socket; if another process takes it before uvicorn binds,
    uvicorn exits and :meth:`wait_ready` starts it again on another port. (Handing over a bound socket with ``--fd``
    is not used: uvicorn treats such a socket as AF_UNIX, so asyncio does not set ``TCP_NODELAY`` on its
    connections and every response stalls ~40 ms on delayed ACKs.)
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._start()

    def _start(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--app-dir", HERE]
        command += ["--log-level", "warning", "--no-access-log", "--loop", "asyncio", "--http", "h11"]
        command += ["--timeout-keep-alive", "30", "--backlog", "2048", "_server:app"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 20.0) -> None:

        end = time.monotonic() + timeout
        restarts = 0
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                if restarts >= 3:
                    raise RuntimeError(f"uvicorn exited with status {self.proc.returncode}")
                restarts += 1
                self._start()
                continue
            try:
                httpx.get(self.url + "/__stats", timeout=1.0)
                return
            except httpx.HTTPError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def reset(self) -> None:

        httpx.post(self.url + "/__reset", timeout=5.0)

    def connections(self) -> int:

        return int(httpx.get(self.url + "/__stats", timeout=5.0).text)

    def close(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _drive(client: Any, url: str, total: int, concurrency: int) -> tuple[float, int]:
    remaining = total
    errors = 0

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            try:
                response = await client.get(url)
                if response.status_code != 200:
                    errors += 1
            except Exception:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, errors


PLAIN_LOOPBACK = "plain httpx.AsyncClient()"
STALWART_LOOPBACK = "stalwart AsyncResilientTransport (default inner transport)"
PLAIN_POOL_LOOPBACK = "plain httpx, pool of 50"
STALWART_POOL_LOOPBACK = "stalwart over AsyncHTTPTransport, pool of 50"


def _clients(concurrency: int) -> dict[str, Callable[[], Any]]:
    """The clients compared: as users build them by default, and both with a pool of exactly ``concurrency``
    connections, all kept alive.

    With httpx's default pool (100 connections, 20 kept alive) the number of connections opened at concurrency 50
    depends on timing: a burst of responses closes the idle connections beyond 20, and a request that finds every
    connection busy opens another one. With ``max_connections == max_keepalive_connections == concurrency`` nothing
    is ever closed by the pool, so every connection beyond ``concurrency`` was closed by the code under test.
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def plain() -> Any:
        return httpx.AsyncClient()

    def stalwart() -> Any:
        transport_cls = stalwart_name("AsyncResilientTransport")
        return httpx.AsyncClient(transport=transport_cls(config=resilience_config(concurrency)))

    def plain_pool() -> Any:
        return httpx.AsyncClient(limits=limits)

    def stalwart_pool() -> Any:
        transport_cls = stalwart_name("AsyncResilientTransport")
        inner = httpx.AsyncHTTPTransport(limits=limits)
        return httpx.AsyncClient(transport=transport_cls(inner, config=resilience_config(concurrency)))

    return {
        PLAIN_LOOPBACK: plain,
        STALWART_LOOPBACK: stalwart,
        PLAIN_POOL_LOOPBACK: plain_pool,
        STALWART_POOL_LOOPBACK: stalwart_pool,
    }


def throughput(
    *, requests: int = 2000, rounds: int = 5, concurrency: int = CONCURRENCY, warmup: int = 200
) -> ThroughputResult:
    """Run the loopback throughput benchmark; every round runs every client once (the order rotates by round)."""
    makers = _clients(concurrency)
    rows = {name: ThroughputRow(name) for name in makers}
    for name, make in makers.items():
        try:
            make()
        except (Unavailable, ImportError) as exc:
            rows[name].unavailable = str(exc)
    live = [name for name in makers if rows[name].unavailable is None]
    result = ThroughputResult(rows, requests, rounds, concurrency)
    server = Server()
    try:
        server.wait_ready()
        loop = asyncio.new_event_loop()
        try:

            async def one(name: str, total: int) -> tuple[float, int, int]:
                server.reset()
                client = makers[name]()
                try:
                    elapsed, errors = await _drive(client, server.url + "/", total, concurrency)
                finally:
                    await client.aclose()
                return elapsed, errors, server.connections()

            for name in live:  # warm up both code paths and the server
                loop.run_until_complete(one(name, warmup))
            for r in range(rounds):
                shift = r % max(len(live), 1)
                order = live[shift:] + live[:shift]
                if r % 2:
                    order.reverse()
                for name in order:
                    elapsed, errors, connections = loop.run_until_complete(one(name, requests))
                    row = rows[name]
                    row.rps.append(requests / elapsed)
                    row.errors.append(errors)
                    row.connections.append(connections)
        finally:
            loop.close()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        server.close()
    return result
