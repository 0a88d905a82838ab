"""Regression: an attempt that queued for a bulkhead slot was sent with the time left *before* the wait.

What was wrong: each attempt's limit (the smaller of ``timeout`` and the time left on the ambient deadline) was
computed before the attempt took its bulkhead slot, and used after it: for the ``Request-Deadline-Ms`` header sent
downstream, for httpx's clamped connect/read/write/pool timeouts and for the per-attempt watchdog. A request that
waited in the bulkhead's queue therefore told the next service it had the whole budget (a request with 1 s left
after a 4 s wait announced ``Request-Deadline-Ms: 5000``, so the callee worked for an answer nobody would read),
and its httpx timeouts (the sync transport's only limit) let it run that long past the caller's deadline. A
deadline that passed during the wait still sent the request. The async loop, the sync loop and the hedged
attempts had the fault.

The rule now: when an attempt had to wait for its slot, the time left is read again after the wait; the limit,
the deadline header and the clamped timeouts come from that reading, and a deadline that passed meanwhile raises
``DeadlineExceeded`` without a network call (the slot and the breaker permit given back).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from stalwart._deadline import deadline
from stalwart._exceptions import DeadlineExceeded
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock

BASE = "https://api.example.com"
ORIGIN = "http:https://api.example.com:443"


class Upstream:
    """Holds requests to ``/hold`` until ``release`` is set; records the others' deadline header and timeouts."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, dict[str, Any]]] = []
        self.held = threading.Event()
        self.release = threading.Event()

    def record(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.headers.get("request-deadline-ms"), dict(request.extensions.get("timeout") or {})))
        return httpx.Response(200)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/hold":
            self.held.set()
            self.release.wait(10.0)
            return httpx.Response(200)
        return self.record(request)

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/hold":
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.001)
            return httpx.Response(200)
        return self.record(request)


CONFIGS = [
    pytest.param(ResilienceConfig(max_concurrent=1, max_attempts=1), id="loop"),
    pytest.param(ResilienceConfig(max_concurrent=1, hedge=30.0), id="hedged"),
]


@pytest.mark.parametrize("config", CONFIGS)
async def test_async_attempt_limit_is_read_after_the_bulkhead_wait(config: ResilienceConfig) -> None:
    upstream = Upstream()
    clock = FakeClock()
    registry = Registry()
    # The transport keeps the system clock (a hedge's timer is then the loop's, which does not fire during the
    # test); the ambient deadline runs on the fake clock, advanced while the request waits for its slot.
    transport = AsyncResilientTransport(httpx.MockTransport(upstream.ahandler), config=config, registry=registry)
    async with httpx.AsyncClient(transport=transport) as client:
        holder = asyncio.create_task(client.post(f"{BASE}/hold"))  # a POST is never hedged
        while not upstream.held.is_set():
            await asyncio.sleep(0.001)
        with deadline(5.0, clock=clock):
            waiter = asyncio.create_task(client.get(f"{BASE}/"))
        bulkhead = registry.get_bulkhead(ORIGIN)
        while bulkhead.statistics().queued == 0:
            await asyncio.sleep(0.001)
        clock.advance(4.0)  # four of the five seconds go in the queue
        upstream.release.set()
        response = await waiter
        await holder
    assert response.status_code == 200
    assert upstream.seen == [("1000", dict.fromkeys(("connect", "read", "write", "pool"), 1.0))]


@pytest.mark.parametrize("config", CONFIGS)
async def test_async_deadline_passed_during_the_wait_sends_nothing(config: ResilienceConfig) -> None:
    upstream = Upstream()
    clock = FakeClock()
    registry = Registry()
    # The transport keeps the system clock (a hedge's timer is then the loop's, which does not fire during the
    # test); the ambient deadline runs on the fake clock, advanced while the request waits for its slot.
    transport = AsyncResilientTransport(httpx.MockTransport(upstream.ahandler), config=config, registry=registry)
    async with httpx.AsyncClient(transport=transport) as client:
        holder = asyncio.create_task(client.post(f"{BASE}/hold"))  # a POST is never hedged
        while not upstream.held.is_set():
            await asyncio.sleep(0.001)
        with deadline(5.0, clock=clock):
            waiter = asyncio.create_task(client.get(f"{BASE}/"))
        bulkhead = registry.get_bulkhead(ORIGIN)
        while bulkhead.statistics().queued == 0:
            await asyncio.sleep(0.001)
        clock.advance(6.0)
        upstream.release.set()
        with pytest.raises(DeadlineExceeded):
            await waiter
        await holder
    assert upstream.seen == []
    assert bulkhead.statistics().active == 0
    breaker = registry.get(ORIGIN)
    assert breaker.statistics().state.value == "closed"


def _sync_setup(upstream: Upstream, clock: FakeClock, registry: Registry) -> tuple[httpx.Client, threading.Thread]:
    transport = ResilientTransport(
        httpx.MockTransport(upstream.handler),
        config=ResilienceConfig(max_concurrent=1, max_attempts=1),
        registry=registry,
        clock=clock,
    )
    client = httpx.Client(transport=transport)
    holder = threading.Thread(target=client.get, args=(f"{BASE}/hold",))
    holder.start()
    assert upstream.held.wait(10.0)
    return client, holder


def _queue_then_release(upstream: Upstream, clock: FakeClock, registry: Registry, advance: float) -> None:
    bulkhead = registry.get_bulkhead(ORIGIN)
    for _ in range(10_000):
        if bulkhead.statistics().queued:
            break
        threading.Event().wait(0.001)
    clock.advance(advance)
    upstream.release.set()


def test_sync_attempt_limit_is_read_after_the_bulkhead_wait() -> None:
    upstream = Upstream()
    clock = FakeClock()
    registry = Registry()
    client, holder = _sync_setup(upstream, clock, registry)
    releaser = threading.Thread(target=_queue_then_release, args=(upstream, clock, registry, 4.0))
    releaser.start()
    with deadline(5.0, clock=clock):
        response = client.get(f"{BASE}/")
    releaser.join()
    holder.join()
    client.close()
    assert response.status_code == 200
    assert upstream.seen == [("1000", dict.fromkeys(("connect", "read", "write", "pool"), 1.0))]


def test_sync_deadline_passed_during_the_wait_sends_nothing() -> None:
    upstream = Upstream()
    clock = FakeClock()
    registry = Registry()
    client, holder = _sync_setup(upstream, clock, registry)
    releaser = threading.Thread(target=_queue_then_release, args=(upstream, clock, registry, 6.0))
    releaser.start()
    with deadline(5.0, clock=clock), pytest.raises(DeadlineExceeded):
        client.get(f"{BASE}/")
    releaser.join()
    holder.join()
    client.close()
    assert upstream.seen == []
    assert registry.get_bulkhead(ORIGIN).statistics().active == 0
