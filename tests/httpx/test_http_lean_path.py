"""AsyncResilientTransport's lean first attempt (taken once the transport's watchdog exists for the running loop)
behaves exactly as the general loop: a differential test over scripted outcomes, and settlement on cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER

from stalwart import DeadlineExceeded
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"

Step = int | BaseException


class Scripted:
    """An upstream answering each request with the next step (the last one repeats); records the attempt header."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.attempts: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(request.headers.get("Stalwart-Attempt"))
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        return httpx.Response(step, content=b"body")


async def run(steps: list[Step], *, lean: bool) -> dict[str, Any]:
    upstream = Scripted([200, *steps])  # the first request creates the watchdog: later ones may take the lean path
    registry = Registry()
    transport = AsyncResilientTransport(
        httpx.MockTransport(upstream),
        config=ResilienceConfig(backoff=NO_JITTER, failure_threshold=2),
        registry=registry,
        clock=FakeClock(),
    )
    general = 0
    send = transport._send

    async def counted(*args: Any) -> httpx.Response:
        nonlocal general
        general += 1
        return await send(*args)

    transport._send = counted  # type: ignore[method-assign]
    transport._lean = lean
    outcomes: list[object] = []
    requests: list[httpx.Request] = []
    for _ in range(3):
        request = httpx.Request("GET", URL)
        requests.append(request)
        try:
            response = await transport.handle_async_request(request)
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        else:
            outcomes.append(response.status_code)
    return {
        "outcomes": outcomes,
        "attempts": upstream.attempts,
        "snapshot": registry.snapshot(),
        "headers": [list(request.headers.raw) for request in requests],
        "general": general,
    }


SCRIPTS: list[list[Step]] = [
    [200],
    [503, 200],
    [500],
    [404],
    [httpx.ConnectError("refused"), 200],
    [httpx.ConnectError("refused")],
    [ValueError("not transient"), 200],
    [503, httpx.ReadTimeout("slow"), 200],
]


@pytest.mark.parametrize("steps", SCRIPTS, ids=repr)
async def test_the_lean_first_attempt_matches_the_general_loop(steps: list[Step]) -> None:
    lean = await run(list(steps), lean=True)
    general = await run(list(steps), lean=False)
    assert general["general"] == 3  # every request through the loop
    if steps == [200]:
        assert lean["general"] == 1  # only the first request (it creates the watchdog)
    lean.pop("general")
    general.pop("general")
    assert lean == general


async def test_a_cancelled_lean_attempt_settles_everything() -> None:
    started = asyncio.Event()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            started.set()
            await asyncio.Event().wait()  # until cancelled
        return httpx.Response(200)

    registry = Registry()
    transport = AsyncResilientTransport(httpx.MockTransport(handler), registry=registry, clock=FakeClock())
    await transport.handle_async_request(httpx.Request("GET", URL))
    request = httpx.Request("GET", URL)
    before = list(request.headers.raw)
    task = asyncio.create_task(transport.handle_async_request(request))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(request.headers.raw) == before
    origin = transport.origin(URL)
    assert origin.bulkhead is not None
    assert origin.bulkhead.statistics().active == 0
    assert origin.breaker is not None
    assert transport._watchdog is not None
    assert not transport._watchdog.due


async def test_a_lean_attempt_past_its_timeout_raises_deadline_exceeded() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            await asyncio.Event().wait()  # until the watchdog cancels it
        return httpx.Response(200)

    transport = AsyncResilientTransport(
        httpx.MockTransport(handler), config=ResilienceConfig(timeout=0.01, max_attempts=1), registry=Registry()
    )
    await transport.handle_async_request(httpx.Request("GET", URL))
    request = httpx.Request("GET", URL)
    before = list(request.headers.raw)
    with pytest.raises(DeadlineExceeded):
        await transport.handle_async_request(request)
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    assert list(request.headers.raw) == before
    bulkhead = transport.origin(URL).bulkhead
    assert bulkhead is not None
    assert bulkhead.statistics().active == 0
