"""Regression: a response whose body failed to read inside the attempt was dropped without being closed.

What was wrong: with ``read_response=True`` (forced by ``ResilientClient``) or an ``on_result`` predicate, the
drivers read the body inside the attempt (``await response.aread()`` / ``response.read()``). When that read raised
(a connection dropped mid-body, a body that fails to decode, the per-attempt timeout cutting the read), the
exception was classified and retried or raised, but the response it came from was never closed: its stream stayed
open, and its connection checked out of the pool, until the garbage collector happened to finalise it (never, for
an inner transport whose stream does not close itself on error). ``httpx.AsyncClient.send`` closes a response
whose read fails; a transport reading for its caller must too. The async loop, the sync loop and the hedged
attempts had the fault.

The rule now: a response the transport read and could not finish reading is closed before the error goes on
(retried or raised), whatever the error, cancellation included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"


class BrokenBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends a few bytes then fails with ``error`` (an instance), recording whether it was closed."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"part"
        raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"part"
        raise self.error

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class Upstream:
    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.bodies: list[BrokenBody] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = BrokenBody(self.error)
        self.bodies.append(body)
        return httpx.Response(200, stream=body)


ERRORS = [
    pytest.param(lambda: httpx.ReadError("connection dropped mid-body"), httpx.ReadError, id="read-error"),
    pytest.param(lambda: httpx.DecodingError("bad gzip"), httpx.DecodingError, id="decoding-error"),
    pytest.param(lambda: ValueError("a broken stream"), ValueError, id="other-exception"),
]


@pytest.mark.parametrize(("make", "raised"), ERRORS)
@pytest.mark.parametrize("config", [ResilienceConfig(read_response=True), ResilienceConfig(on_result=lambda r: False)])
async def test_async_transport_closes_a_response_whose_read_failed(
    make: object, raised: type[BaseException], config: ResilienceConfig
) -> None:
    upstream = Upstream(make())  # type: ignore[operator]
    transport = AsyncResilientTransport(
        httpx.MockTransport(upstream.handler), config=config, registry=Registry(), clock=FakeClock()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(raised):
            await client.get(URL)
    assert upstream.bodies
    assert [body.closed for body in upstream.bodies] == [True] * len(upstream.bodies)


@pytest.mark.parametrize(("make", "raised"), ERRORS)
@pytest.mark.parametrize("config", [ResilienceConfig(read_response=True), ResilienceConfig(on_result=lambda r: False)])
def test_sync_transport_closes_a_response_whose_read_failed(
    make: object, raised: type[BaseException], config: ResilienceConfig
) -> None:
    upstream = Upstream(make())  # type: ignore[operator]
    transport = ResilientTransport(
        httpx.MockTransport(upstream.handler), config=config, registry=Registry(), clock=FakeClock()
    )
    with httpx.Client(transport=transport) as client, pytest.raises(raised):
        client.get(URL)
    assert upstream.bodies
    assert [body.closed for body in upstream.bodies] == [True] * len(upstream.bodies)


@pytest.mark.parametrize(("make", "raised"), ERRORS)
async def test_hedged_attempts_close_a_response_whose_read_failed(make: object, raised: type[BaseException]) -> None:
    upstream = Upstream(make())  # type: ignore[operator]
    config = ResilienceConfig(read_response=True, hedge=0.5)
    transport = AsyncResilientTransport(
        httpx.MockTransport(upstream.handler), config=config, registry=Registry(), clock=FakeClock()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(raised):
            await client.get(URL)
    assert upstream.bodies
    assert [body.closed for body in upstream.bodies] == [True] * len(upstream.bodies)


async def test_a_read_cut_by_the_per_attempt_timeout_closes_its_response() -> None:
    """The watchdog's cancellation in the middle of the body: the response is closed, the timeout retried."""
    bodies: list[BrokenBody] = []

    class SlowBody(BrokenBody):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"part"
            await asyncio.sleep(10)  # cut by the 0.01 s per-attempt timeout
            yield b"never"

    async def handler(request: httpx.Request) -> httpx.Response:
        body = SlowBody(RuntimeError("unused"))
        bodies.append(body)
        return httpx.Response(200, stream=body)

    config = ResilienceConfig(read_response=True, timeout=0.01, max_attempts=2)
    transport = AsyncResilientTransport(
        httpx.MockTransport(handler), config=config, registry=Registry(), clock=FakeClock()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(TimeoutError):
            await client.get(URL)
    assert [body.closed for body in bodies] == [True, True]
