"""Regression: a hedged attempt whose deadline passed during its bulkhead wait was counted as a failed attempt.

What was wrong: an attempt that queued for its bulkhead slot reads the time left on the ambient deadline again after
the wait (``TransportCore.limit_after_wait``), and when the deadline has passed meanwhile it raises
``DeadlineExceeded`` without sending anything. The async and sync loops raise it at once, as they do when the
deadline has passed before an attempt starts: nothing was sent, so the retry budget records nothing, the breaker's
permit is given back without an outcome, and no give-up note or ``RetryGaveUp`` event is added. The hedged path took
the same ``DeadlineExceeded`` for an attempt's transient error (it is a ``TimeoutError``): it recorded a failure in
the origin's retry budget (draining a ratio budget with attempts that never reached the server) and ran the give-up
logic (a note "gave up ... (the deadline ...)" and a ``RetryGaveUp`` event), in the race of the first try and in
the single-attempt retries after it.

The rule now: the hedged path settles it as the loops do: the error is raised at once (the race's other attempts
cancelled and awaited first), nothing recorded, no note, no event.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from stalwart import _events
from stalwart._deadline import deadline
from stalwart._events import RetryGaveUp
from stalwart._exceptions import DeadlineExceeded
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.testing import FakeClock, testing

BASE = "https://api.example.com"
ORIGIN = "http:https://api.example.com:443"


class Budget:
    """A retry budget that grants every retry and records what the driver reports."""

    name = "recording"

    def __init__(self) -> None:
        self.records: list[tuple[str, bool]] = []

    def record_success(self, first: bool) -> None:
        self.records.append(("success", first))

    def record_failure(self, first: bool) -> None:
        self.records.append(("failure", first))

    def try_acquire_retry(self) -> bool:
        return True


class Upstream:
    """``/hold`` answers once ``release`` is set; ``/`` answers ``statuses`` in turn (the last repeats). With
    ``start_holder``, the first request to ``/`` sets it and answers once ``holder_queued`` is set."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls = 0
        self.release = asyncio.Event()
        self.held = asyncio.Event()
        self.start_holder: asyncio.Event | None = None
        self.holder_queued = asyncio.Event()

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/hold":
            self.held.set()
            await self.release.wait()
            return httpx.Response(200)
        self.calls += 1
        if self.start_holder is not None and self.calls == 1:
            self.start_holder.set()
            await self.holder_queued.wait()  # the holder queues behind this attempt's slot, and gets it next
        return httpx.Response(self.statuses[min(self.calls, len(self.statuses)) - 1])


CONFIGS = [
    pytest.param(None, id="loop"),
    pytest.param(30.0, id="hedged"),
]


def _transport(upstream: Upstream, budget: Budget, hedge: float | None, registry: Registry) -> AsyncResilientTransport:
    # The transport keeps the system clock (a hedge's timer is then the loop's, which does not fire during the
    # test); the ambient deadline runs on a fake clock, advanced while the request waits for its slot.
    config = ResilienceConfig(max_concurrent=1, max_attempts=3, hedge=hedge, budget=budget)
    return AsyncResilientTransport(httpx.MockTransport(upstream.handler), config=config, registry=registry)


async def _queued(registry: Registry) -> None:
    bulkhead = registry.get_bulkhead(ORIGIN)
    while bulkhead.statistics().queued == 0:
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("hedge", CONFIGS)
async def test_first_attempt_past_the_deadline_after_its_wait(hedge: float | None) -> None:
    upstream = Upstream([200])
    budget = Budget()
    registry = Registry()
    clock = FakeClock()
    events: list[object] = []
    _events.add_hook(events.append)
    try:
        async with httpx.AsyncClient(transport=_transport(upstream, budget, hedge, registry)) as client:
            holder = asyncio.create_task(client.post(f"{BASE}/hold"))  # a POST is never hedged
            await upstream.held.wait()
            with deadline(5.0, clock=clock):
                waiter = asyncio.create_task(client.get(f"{BASE}/"))
            await _queued(registry)
            clock.advance(6.0)
            upstream.release.set()
            with pytest.raises(DeadlineExceeded) as caught:
                await waiter
            await holder
    finally:
        _events.remove_hook(events.append)
    assert upstream.calls == 0
    assert budget.records == [("success", True)]  # the holder's; the unsent attempt recorded nothing
    assert not getattr(caught.value, "__notes__", None)
    assert not [event for event in events if isinstance(event, RetryGaveUp)]
    assert registry.get(ORIGIN).statistics().state.value == "closed"


@pytest.mark.parametrize("hedge", CONFIGS)
async def test_retry_past_the_deadline_after_its_wait(hedge: float | None) -> None:
    upstream = Upstream([503, 200])
    upstream.start_holder = asyncio.Event()
    budget = Budget()
    registry = Registry()
    clock = FakeClock()
    async with httpx.AsyncClient(transport=_transport(upstream, budget, hedge, registry)) as client:
        with testing(no_sleep=True), deadline(5.0, clock=clock):
            waiter = asyncio.create_task(client.get(f"{BASE}/"))
        await upstream.start_holder.wait()
        holder = asyncio.create_task(client.post(f"{BASE}/hold"))
        await _queued(registry)
        upstream.holder_queued.set()
        await upstream.held.wait()  # the holder got the slot the first attempt gave back
        await _queued(registry)  # and the retry waits for it
        clock.advance(6.0)
        upstream.release.set()
        with pytest.raises(DeadlineExceeded):
            await waiter
        await holder
    assert upstream.calls == 1
    assert budget.records == [("failure", True), ("success", True)]  # the 503 and the holder; the retry nothing
