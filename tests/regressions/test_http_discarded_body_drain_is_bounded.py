"""Regression: draining a discarded response had no overall time limit.

What was wrong: before a retry, the drivers close the response they discard, and read its body first when it is
small (``Content-Length`` up to 64 KiB) so the connection goes back to the pool. That read had no limit of its own:
httpx's read timeout applies to each read, not to the body, so a server trickling the body (a byte per read, each
read within the read timeout) kept the retry loop draining far past the per-attempt timeout and the ambient
deadline (1000 bytes at one a second: 1000 s before the retry of a request with a 5 s timeout). A read that never
completes kept it for httpx's read timeout, or for ever without one. The async loop, the sync loop and the hedged
path had the fault.

The rule now: the drain may take the per-attempt limit, and no more than the time left on the ambient deadline
(less the backoff delay that follows); when it cannot finish in that time the response is closed unread (its
connection is dropped, not reused). Async, a loop timer also cuts a read that stalls; sync code cannot be
pre-empted, so the time is checked between reads (each bounded by httpx's read timeout, clamped to the limit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from stalwart._backoff import Backoff, Jitter
from stalwart._deadline import deadline
from stalwart._exceptions import DeadlineExceeded
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock, testing

URL = "https://api.example.com/items"
BODY = 1000
ONE_SECOND = Backoff.constant(1.0, jitter=Jitter.NONE)


class Trickle(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A ``BODY``-byte body sent a byte per read, each read taking one second of ``clock`` (``clock`` None: the
    second read never completes)."""

    def __init__(self, clock: FakeClock | None) -> None:
        self.clock = clock
        self.reads = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(BODY):
            if self.clock is not None:
                self.clock.advance(1.0)
            self.reads += 1
            yield b"x"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(BODY):
            if self.clock is None:
                if self.reads:
                    await asyncio.Event().wait()  # a read that never completes
            else:
                self.clock.advance(1.0)
            self.reads += 1
            yield b"x"

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class Upstream:
    """Answers 503 with a trickling body, then 200."""

    def __init__(self, clock: FakeClock | None) -> None:
        self.clock = clock
        self.bodies: list[Trickle] = []
        self.calls = 0
        self.sent_at: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.clock is not None:
            self.sent_at.append(self.clock.monotonic())
        if self.calls > 1:
            return httpx.Response(200)
        body = Trickle(self.clock)
        self.bodies.append(body)
        return httpx.Response(503, headers={"Content-Length": str(BODY)}, stream=body)

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        return self.handler(request)


def _config(timeout: float, hedge: float | None = None) -> ResilienceConfig:
    return ResilienceConfig(max_attempts=2, backoff=ONE_SECOND, timeout=timeout, hedge=hedge)


async def _get(mode: str, upstream: Upstream, clock: FakeClock, config: ResilienceConfig) -> httpx.Response:
    if mode == "async":
        transport = AsyncResilientTransport(
            httpx.MockTransport(upstream.ahandler), config=config, registry=Registry(), clock=clock
        )
        async with httpx.AsyncClient(transport=transport) as client:
            return await asyncio.wait_for(client.get(URL), 10.0)
    sync = ResilientTransport(httpx.MockTransport(upstream.handler), config=config, registry=Registry(), clock=clock)
    with httpx.Client(transport=sync) as client:
        return client.get(URL)


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_the_drain_stops_at_the_per_attempt_timeout(mode: str) -> None:
    clock = FakeClock()
    upstream = Upstream(clock)
    response = await _get(mode, upstream, clock, _config(timeout=5.0))
    assert response.status_code == 200
    [body] = upstream.bodies
    assert body.reads <= 5  # was 1000: the whole body, a second a byte
    assert body.closed
    assert upstream.sent_at[1] <= 5.0 + 1.0  # the retry came after at most the timeout's drain and the backoff


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_the_drain_ends_before_the_ambient_deadline(mode: str) -> None:
    clock = FakeClock()
    upstream = Upstream(clock)
    # 4 s left and a 1 s backoff: at most 3 s of drain, then the retry is due with no time left for it.
    with deadline(4.0, clock=clock), pytest.raises(DeadlineExceeded):
        await _get(mode, upstream, clock, _config(timeout=30.0))
    [body] = upstream.bodies
    assert body.reads <= 3  # was 1000: the deadline passed 996 s before the drain ended
    assert body.closed
    assert clock.monotonic() <= 4.0


@pytest.mark.parametrize("hedge", [None, 30.0], ids=["loop", "hedged"])
async def test_a_read_that_stalls_is_cut_by_the_limit(hedge: float | None) -> None:
    # The transport keeps the system clock (a hedge's timer is then the loop's, which does not fire here); the
    # drain's loop timer cuts the stalled read after the 0.05 s per-attempt timeout instead of waiting for ever.
    upstream = Upstream(None)
    transport = AsyncResilientTransport(
        httpx.MockTransport(upstream.ahandler), config=_config(timeout=0.05, hedge=hedge), registry=Registry()
    )
    with testing(no_sleep=True):
        async with httpx.AsyncClient(transport=transport) as client:
            response = await asyncio.wait_for(client.get(URL), 10.0)
    assert response.status_code == 200
    [body] = upstream.bodies
    assert body.reads == 1
    assert body.closed
