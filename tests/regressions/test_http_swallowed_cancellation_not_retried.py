"""Regression: the async transport retried while its task was being cancelled.

An inner transport (or a driver under it) that swallows the ``CancelledError`` it is sent (turning it into its own
connection error, or answering 503) ends the attempt with a retryable outcome while the task is being cancelled by
``asyncio.timeout``, ``Task.cancel()`` or a ``TaskGroup``. asyncio delivers a cancellation once, so nothing stopped the
next attempt: the request outlived the caller's timeout by every remaining attempt and its backoff, and a success on
a later attempt even made ``asyncio.timeout`` return normally. ``Retry`` was fixed for the same fault
(test_swallowed_cancellation_not_retried.py); the transport now raises ``CancelledError`` from the last outcome
instead of retrying, as Polly checks its cancellation token before each retry.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from stalwart import Backoff
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.testing import FakeClock


class SwallowsCancellation(httpx.AsyncBaseTransport):
    """The first attempt hangs; cancelled, it swallows the cancellation and fails as ``answer`` says."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls = 0
        self.closed: list[bool] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls > 1:
            return httpx.Response(200)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self.answer == "error":
                raise httpx.ConnectError("connection reset", request=request) from None
            return httpx.Response(503, stream=Recording(self.closed))
        raise AssertionError("unreachable")


class Recording(httpx.AsyncByteStream):
    def __init__(self, closed: list[bool]) -> None:
        self.closed = closed

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b""

    async def aclose(self) -> None:
        self.closed.append(True)


def _transport(inner: httpx.AsyncBaseTransport) -> AsyncResilientTransport:
    config = ResilienceConfig(backoff=Backoff.constant(0.0), timeout=None, use_breaker=False, use_bulkhead=False)
    return AsyncResilientTransport(inner, config=config, registry=Registry(), clock=FakeClock())


@pytest.mark.parametrize("answer", ["error", "status"])
async def test_asyncio_timeout_is_not_outlived(answer: str) -> None:
    inner = SwallowsCancellation(answer)
    async with httpx.AsyncClient(transport=_transport(inner)) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await client.get("http://svc.test/")
    assert inner.calls == 1
    if answer == "status":
        assert inner.closed == [True]  # the swallowed attempt's response is closed


@pytest.mark.parametrize("answer", ["error", "status"])
async def test_task_cancel_is_not_outlived(answer: str) -> None:
    inner = SwallowsCancellation(answer)
    async with httpx.AsyncClient(transport=_transport(inner)) as client:
        task = asyncio.create_task(client.get("http://svc.test/"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert inner.calls == 1


class FailsThenSwallows(httpx.AsyncBaseTransport):
    """503 at once, then an attempt that hangs and swallows its cancellation, then 200."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 1:
            return httpx.Response(503)
        if self.calls == 2:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise httpx.ConnectError("connection reset", request=request) from None
        return httpx.Response(200)


async def test_hedged_requests_retries_are_not_outlived() -> None:
    inner = FailsThenSwallows()
    config = ResilienceConfig(
        backoff=Backoff.constant(0.0), timeout=None, use_breaker=False, use_bulkhead=False, hedge=30.0
    )
    transport = AsyncResilientTransport(inner, config=config, registry=Registry(), clock=FakeClock())
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await client.get("http://svc.test/")
    assert inner.calls == 2
