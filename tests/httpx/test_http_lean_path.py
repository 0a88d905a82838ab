"""AsyncResilientTransport's lean first attempt (taken once the transport's watchdog exists for the running loop)
behaves exactly as the general loop: a differential test over scripted outcomes, and settlement on cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER, GatedOneSlot

from stalwart import CircuitBreaker, CircuitCallRecorded, DeadlineExceeded, Event, add_hook, remove_hook
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
    budget = transport.origin(URL).budget
    assert budget is not None
    return {
        "outcomes": outcomes,
        "attempts": upstream.attempts,
        "snapshot": registry.snapshot(),
        "budget": budget.statistics(),
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


async def test_a_lean_release_hands_the_slot_to_a_queued_request() -> None:
    # The lean path inlines Bulkhead.release: a request queued behind it must still be woken with the slot.
    gated = await GatedOneSlot.create(URL)
    transport, gate, entered = gated.transport, gated.gate, gated.entered
    first = asyncio.create_task(transport.handle_async_request(httpx.Request("GET", URL)))
    await entered.wait()
    second = asyncio.create_task(transport.handle_async_request(httpx.Request("GET", URL)))
    bulkhead = transport.origin(URL).bulkhead
    assert bulkhead is not None
    while bulkhead.statistics().queued == 0:
        await asyncio.sleep(0)
    gate.set()
    assert (await first).status_code == 200
    assert (await asyncio.wait_for(second, 5)).status_code == 200
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.available) == (0, 0, 1)


async def test_lean_successes_are_counted_by_the_breaker_and_the_budget() -> None:
    registry = Registry()
    transport = AsyncResilientTransport(
        httpx.MockTransport(lambda request: httpx.Response(200)), registry=registry, clock=FakeClock()
    )
    for _ in range(25):
        await transport.handle_async_request(httpx.Request("GET", URL))
    origin = transport.origin(URL)
    # the inlined path
    assert origin.pending is not None
    assert origin.core is not None
    assert origin.slots is not None
    assert origin.breaker is not None
    assert origin.breaker.statistics().calls == 25
    assert origin.budget is not None
    # 25 calls deposited at 20 %, plus the reserve of 10 retries per second over 10 s
    assert origin.budget.statistics().balance == 25 // 5 + 100


async def test_lean_successes_emit_call_recorded_when_hooks_are_installed() -> None:
    seen: list[Event] = []
    transport = AsyncResilientTransport(
        httpx.MockTransport(lambda request: httpx.Response(200)), registry=Registry(), clock=FakeClock()
    )
    await transport.handle_async_request(httpx.Request("GET", URL))
    add_hook(seen.append)
    try:
        await transport.handle_async_request(httpx.Request("GET", URL))
    finally:
        remove_hook(seen.append)
    assert [e.outcome for e in seen if isinstance(e, CircuitCallRecorded)] == ["success"]


async def test_subclassed_policies_are_called_not_inlined() -> None:
    class CountingBreaker(CircuitBreaker):
        successes = 0

        def record_success(self, permit: int, duration: float = 0.0) -> None:
            CountingBreaker.successes += 1
            super().record_success(permit, duration)

    registry = Registry()
    clock = FakeClock()
    config = ResilienceConfig()
    registry.register(
        CountingBreaker(
            "http:https://api.example.com:443",
            failure_threshold=config.failure_threshold,
            success_threshold=config.success_threshold,
            reset_timeout=config.reset_timeout,
            half_open_max_calls=config.half_open_max_calls,
            clock=clock,
        )
    )
    transport = AsyncResilientTransport(
        httpx.MockTransport(lambda request: httpx.Response(200)), config=config, registry=registry, clock=clock
    )
    for _ in range(3):
        await transport.handle_async_request(httpx.Request("GET", URL))
    assert transport.origin(URL).core is None
    assert CountingBreaker.successes == 3
