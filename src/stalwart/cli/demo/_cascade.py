"""The ``cascade`` scenario: the seed's first figure, A → B → C on loopback, C hangs, plain against stalwart.

Each side runs its own three services (:mod:`._cascade_apps`) on its own thread and event loop, with the same
workload sent to its A at the same moments (an open loop: users do not wait for each other). C answers in a few
milliseconds, then, from ``hang_at`` on, takes ``hang_for`` seconds per request:

* **plain**: every hop uses ``httpx.AsyncClient()`` with httpx's defaults (5 s timeouts, no retries, no breaker).
  Requests pile up in A and B while they wait for C, every user waits about 5 s for a failure, and C keeps working
  for callers that hung up long ago.
* **resilient**: every service runs behind ``DeadlineMiddleware`` (A gives each user request ``user_budget``
  seconds; each hop keeps a small buffer) and calls the next one through ``AsyncResilientTransport`` (per-attempt
  timeouts, retries, a breaker and a bulkhead per origin) with the attempt's time left sent as
  ``Request-Deadline-Ms``; A answers with a fallback when B cannot. C's handlers are cancelled at C's deadline,
  before anyone gives up: no wasted work, and the breakers stop the calls into the hang.

``--json`` prints ``{"plain": {...}, "resilient": {...}}``, each side with ``requests``, ``succeeded``,
``fallback``, ``failed``, ``p50_ms``, ``p99_ms``, ``max_in_flight_a``, ``max_in_flight_b``, ``wasted_work_c``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from stalwart._backoff import Backoff
from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._registry import Registry
from stalwart.asgi import DeadlineMiddleware
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig

from ._cascade_apps import ASGIApp, Gauge, ServiceC, counting, relay
from ._clients import classify, fallback
from ._server import bind_loopback, serving, url_of
from ._summary import Kind, Outcome, summarize
from ._threads import LoopThread, run_side_by_side
from ._workload import arrival_offsets, run_open_loop

__all__ = ["CascadeResult", "CascadeSettings", "CascadeSide", "run_cascade"]

_START_DELAY = 0.3
_OPEN_LOOP = 100_000  # no cap on the users' requests in flight: the pile-up happens in A, where it is measured
SIDES = ("plain", "resilient")


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """The scenario's knobs.

    Attributes:
        requests: user requests per side (default 400).
        duration: seconds over which they are spread (default 20).
        hang_at: seconds into the run at which C starts hanging (default 5).
        hang_for: seconds C then takes per request (default 6: longer than httpx's 5 s default timeout).
        user_budget: seconds a user waits, A's deadline on the resilient side (default 2).
        buffer: seconds each resilient service keeps for itself (default 0.05).
        seed: seeds the retry jitter.

    Raises:
        ValueError: a value out of range.
    """

    requests: int = 400
    duration: float = 20.0
    hang_at: float = 5.0
    hang_for: float = 6.0
    user_budget: float = 2.0
    buffer: float = 0.05
    seed: int = 2015

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError(f"requests must be >= 1, got {self.requests!r}")
        if not 5.0 <= self.duration < math.inf:
            raise ValueError(f"duration must be at least 5 seconds, got {self.duration!r}")
        if not 0.0 <= self.hang_at < self.duration:
            raise ValueError(f"hang_at must lie within the run, got {self.hang_at!r}")
        if not 0.0 < self.buffer < self.user_budget:
            raise ValueError("buffer must be > 0 and < user_budget")


@dataclass(frozen=True, slots=True)
class CascadeSide:
    """What one side achieved (the JSON shape, :meth:`as_dict`)."""

    requests: int
    succeeded: int
    fallback: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_in_flight_a: int
    max_in_flight_b: int
    wasted_work_c: int

    def as_dict(self) -> dict[str, int | float]:
        """``requests``, ``succeeded``, ``fallback``, ``failed``, ``p50_ms``, ``p99_ms``, ``max_in_flight_a``,
        ``max_in_flight_b``, ``wasted_work_c``, in that order."""
        return {
            "requests": self.requests,
            "succeeded": self.succeeded,
            "fallback": self.fallback,
            "failed": self.failed,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_in_flight_a": self.max_in_flight_a,
            "max_in_flight_b": self.max_in_flight_b,
            "wasted_work_c": self.wasted_work_c,
        }


@dataclass(frozen=True, slots=True)
class CascadeResult:
    """Both sides, and the settings they ran with."""

    plain: CascadeSide
    resilient: CascadeSide
    settings: CascadeSettings

    def document(self) -> dict[str, Any]:
        """The ``--json`` document: ``{"plain": {...}, "resilient": {...}}``."""
        return {"plain": self.plain.as_dict(), "resilient": self.resilient.as_dict()}


def summarize_side(outcomes: list[Outcome], *, a: Gauge, b: Gauge, c: ServiceC) -> CascadeSide:
    """One side's numbers from its users' outcomes (counted as :func:`summarize` counts them) and its services'
    counters (pure)."""
    users = summarize(outcomes, retries=0, upstream_calls_during_outage=0)
    return CascadeSide(
        requests=users.requests,
        succeeded=users.succeeded,
        fallback=users.fallback,
        failed=users.failed,
        p50_ms=users.p50_ms,
        p99_ms=users.p99_ms,
        max_in_flight_a=a.peak,
        max_in_flight_b=b.peak,
        wasted_work_c=c.wasted,
    )


def hop_config(timeout: float) -> ResilienceConfig:
    """A resilient hop sized for the demo: ``timeout`` per attempt, 2 attempts, a breaker opening after 5
    consecutive failures for 1 s, 20 calls in flight per origin (callers wait at most 50 ms for a slot)."""
    return ResilienceConfig(
        timeout=timeout,
        max_attempts=2,
        backoff=Backoff.exponential(initial=0.02, multiplier=2.0, max_delay=0.1),
        failure_threshold=5,
        reset_timeout=1.0,
        max_concurrent=20,
        max_queue=20,
        queue_timeout=0.05,
        read_response=True,
    )


A_TIMEOUT = 1.0
"""A's per-attempt timeout for its calls to B (resilient side), seconds."""
B_TIMEOUT = 0.4
"""B's per-attempt timeout for its calls to C (resilient side), seconds."""


def _pool() -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))


def _client(
    url: str, *, resilient: bool, timeout: float, registry: Registry, seed: int, with_fallback: bool = False
) -> Any:
    if not resilient:
        return httpx.AsyncClient(base_url=url)  # httpx's defaults: 5 s timeouts, 100 connections
    transport = AsyncResilientTransport(
        _pool(),
        config=hop_config(timeout),
        registry=registry,
        fallback=fallback if with_fallback else None,
        random=random.Random(seed).random,
    )
    return httpx.AsyncClient(base_url=url, transport=transport)


@dataclass(slots=True)
class _Side:
    name: str
    sockets: tuple[socket.socket, socket.socket, socket.socket]  # A, B, C
    c: ServiceC
    a: Gauge
    b: Gauge


async def _run_side(side: _Side, settings: CascadeSettings, start: float, clock: Clock) -> list[Outcome]:
    """One side on its own loop: serve C, B and A, send the users' requests to A, stop everything."""
    resilient = side.name == "resilient"
    registry = Registry()
    buffer = settings.buffer
    a_sock, b_sock, c_sock = side.sockets

    def wrap(app: ASGIApp, **options: Any) -> ASGIApp:
        return DeadlineMiddleware(app, buffer=buffer, **options) if resilient else app

    async with contextlib.AsyncExitStack() as stack:
        c_url = await stack.enter_async_context(serving(wrap(side.c), c_sock))
        to_c = _client(c_url, resilient=resilient, timeout=B_TIMEOUT, registry=registry, seed=settings.seed)
        await stack.enter_async_context(to_c)
        b_url = await stack.enter_async_context(serving(wrap(counting(relay(to_c), side.b)), b_sock))
        to_b = _client(
            b_url, resilient=resilient, timeout=A_TIMEOUT, registry=registry, seed=settings.seed, with_fallback=True
        )
        await stack.enter_async_context(to_b)
        a_app = wrap(counting(relay(to_b), side.a), default_timeout=settings.user_budget)
        a_url = await stack.enter_async_context(serving(a_app, a_sock))
        # The users wait as long as it takes (a minute at most), so what they see is what the services do.
        users = await stack.enter_async_context(
            httpx.AsyncClient(base_url=a_url, timeout=httpx.Timeout(60.0), transport=_pool())
        )

        async def send(index: int) -> Kind:
            try:
                return classify(await users.get("/work"))
            except httpx.HTTPError:
                return "failed"

        try:
            return await run_open_loop(
                send,
                arrival_offsets(settings.requests, settings.duration),
                start=start,
                concurrency=_OPEN_LOOP,
                clock=clock,
            )
        finally:
            side.c.close()  # jobs still hanging in C stop, so the servers stop cleanly


def run_cascade(
    settings: CascadeSettings,
    *,
    on_start: Callable[[dict[str, list[str]]], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> CascadeResult:
    """Run both sides at once (blocks for about ``duration`` + 5 seconds) and measure them.

    Args:
        settings: the knobs.
        on_start: called with each side's A, B and C base URLs once their sockets listen.
        clock: the clock of the workload and of C's schedule.

    Raises:
        KeyboardInterrupt: interrupted; both sides were stopped (servers, clients, sockets) first.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(6):
            sockets.append(bind_loopback())
        sides = [
            _Side(
                name,
                (sockets[3 * i], sockets[3 * i + 1], sockets[3 * i + 2]),
                ServiceC(hang_at=settings.hang_at, hang_for=settings.hang_for, clock=clock),
                Gauge(),
                Gauge(),
            )
            for i, name in enumerate(SIDES)
        ]
        if on_start is not None:
            on_start({side.name: [url_of(s) for s in side.sockets] for side in sides})
        start = clock.monotonic() + _START_DELAY
        for side in sides:
            side.c.start = start
        threads = [
            LoopThread(f"stalwart-demo-cascade-{side.name}", functools.partial(_run_side, side, settings, start, clock))
            for side in sides
        ]
        run_side_by_side(threads)
    finally:
        for sock in sockets:
            sock.close()
    plain, resilient = (
        summarize_side(thread.result(), a=side.a, b=side.b, c=side.c)
        for thread, side in zip(threads, sides, strict=True)
    )
    return CascadeResult(plain=plain, resilient=resilient, settings=settings)
