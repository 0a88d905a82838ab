"""AsyncResilientTransport's lean first attempt under concurrency: the same counts as the general loop while the
breaker changes state, hooks come and go mid-flight, and threads share the origin's bulkhead.

The lean attempt inlines CircuitBreaker.acquire/record_success, Bulkhead.try_acquire/release and the ratio budget's
deposit (test_http_lean_path.py checks them one request at a time). Here many requests are in flight together and
the upstream itself moves the breaker (force_open, reset, HALF_OPEN, OPEN, DISABLED, METRICS_ONLY) or installs and
removes a hook while requests are out, so successes arrive with stale permits and with hooks that appeared after
the permit was taken. The scheduling is deterministic (one event loop, scripted awaits), so both paths see the same
interleaving; the backoff is 0 and no step moves the clock, so the ratio budget's deposits (dated at the attempt's
start on the lean path, at its end on the general one) fall on the same instant.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import httpx
import pytest
from _http_harness import GatedOneSlot

from stalwart import Backoff, CircuitBreaker, CountWindow, Event, add_hook, remove_hook
from stalwart._breaker import CircuitState
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"
ORIGIN = "http:https://api.example.com:443"
ACTIONS = [*["none"] * 6, "force_open", "reset", "half_open", "open", "disable", "metrics", "hook_on", "hook_off"]


async def run(seed: int, *, lean: bool, rate_model: bool) -> dict[str, Any]:
    rnd = random.Random(seed)
    plan = [(rnd.choice([200] * 6 + [503, 500, 404]), rnd.choice(ACTIONS), rnd.randint(0, 3)) for _ in range(60)]
    events: list[Event] = []
    hook = events.append
    hooked = False
    served = 0
    registry = Registry()
    clock = FakeClock()
    config = ResilienceConfig(backoff=Backoff.constant(0), failure_threshold=2, max_concurrent=3, max_attempts=2)
    if rate_model:  # a window: successes go through _window_success, not the quiet counter
        registry.register(
            CircuitBreaker(
                ORIGIN,
                failure_threshold=config.failure_threshold,
                success_threshold=config.success_threshold,
                reset_timeout=config.reset_timeout,
                half_open_max_calls=config.half_open_max_calls,
                window=CountWindow(10),
                minimum_calls=4,
                clock=clock,
            )
        )

    async def upstream(request: httpx.Request) -> httpx.Response:
        nonlocal served, hooked
        status, action, pauses = plan[served % len(plan)]
        served += 1
        for _ in range(pauses):
            await asyncio.sleep(0)  # let the other requests move on meanwhile
        breaker = transport.origin(URL).breaker
        assert breaker is not None
        if action == "force_open":
            breaker.force_open()
        elif action == "reset":
            breaker.reset()
        elif action in ("half_open", "open", "disable", "metrics"):
            target = {"half_open": "HALF_OPEN", "open": "OPEN", "disable": "DISABLED", "metrics": "METRICS_ONLY"}
            breaker.transition_to(CircuitState[target[action]])
        elif action == "hook_on" and not hooked:
            add_hook(hook)
            hooked = True
        elif action == "hook_off" and hooked:
            remove_hook(hook)
            hooked = False
        return httpx.Response(status)

    transport = AsyncResilientTransport(
        httpx.MockTransport(upstream),
        config=config,
        registry=registry,
        clock=clock,
    )
    await transport.handle_async_request(httpx.Request("GET", URL))  # creates the watchdog: the lean path may apply
    transport._lean = lean
    origin = transport.origin(URL)
    assert origin.breaker is not None
    outcomes: list[object] = []

    async def one(k: int) -> None:
        for _ in range(k % 3):
            await asyncio.sleep(0)
        try:
            outcome: object = (await transport.handle_async_request(httpx.Request("GET", URL))).status_code
        except Exception as exc:
            outcome = type(exc).__name__
        outcomes.append((k, outcome, origin.breaker.statistics()))  # type: ignore[union-attr]

    try:
        await asyncio.gather(*(one(k) for k in range(40)))
    finally:
        if hooked:
            remove_hook(hook)
    assert origin.budget is not None
    assert origin.bulkhead is not None
    return {
        "outcomes": outcomes,
        "budget": origin.budget.statistics(),
        "bulkhead": origin.bulkhead.statistics(),
        "snapshot": registry.snapshot(),
        "events": [repr(event) for event in events],
    }


@pytest.mark.parametrize("rate_model", [False, True], ids=["consecutive", "rate"])
@pytest.mark.parametrize("seed", range(8))
async def test_concurrent_lean_attempts_count_like_the_general_loop(seed: int, rate_model: bool) -> None:
    lean = await run(seed, lean=True, rate_model=rate_model)
    general = await run(seed, lean=False, rate_model=rate_model)
    assert lean == general
    stats = lean["bulkhead"]
    assert (stats.active, stats.queued) == (0, 0)


# -- the bulkhead shared with threads ---------------------------------------------------------------------------


async def wait_until(condition: Any) -> None:
    for _ in range(100_000):  # a state to reach (another thread's progress), not a timing assertion
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the state was never reached")


async def test_a_thread_queued_behind_a_lean_request_gets_the_slot_it_releases() -> None:
    gated = await GatedOneSlot.create(URL)
    transport, gate, entered = gated.transport, gated.gate, gated.entered
    bulkhead = transport.origin(URL).bulkhead
    assert bulkhead is not None
    assert transport.origin(URL).slots is not None  # the lean path takes and returns the slot inline
    request = asyncio.create_task(transport.handle_async_request(httpx.Request("GET", URL)))
    await entered.wait()
    got_slot = threading.Event()

    def worker() -> None:
        bulkhead.acquire_sync()  # blocks this thread: the lean request holds the only slot
        got_slot.set()
        bulkhead.release()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        await wait_until(lambda: bulkhead.statistics().queued == 1)
        gate.set()
        assert (await request).status_code == 200  # its inlined release hands the slot to the thread
        await wait_until(got_slot.is_set)
    finally:
        gate.set()
        thread.join(30)
    assert not thread.is_alive()
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.available) == (0, 0, 1)


async def test_a_lean_request_queued_behind_a_thread_is_woken_by_its_release() -> None:
    transport = AsyncResilientTransport(
        httpx.MockTransport(lambda request: httpx.Response(200)),
        config=ResilienceConfig(max_concurrent=1),
        registry=Registry(),
        clock=FakeClock(),
    )
    await transport.handle_async_request(httpx.Request("GET", URL))  # creates the watchdog
    bulkhead = transport.origin(URL).bulkhead
    assert bulkhead is not None
    release = threading.Event()

    def worker() -> None:
        bulkhead.acquire_sync()
        release.wait(30)
        bulkhead.release()  # from another thread: wakes the queued request on the loop

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        await wait_until(lambda: bulkhead.statistics().active == 1)
        request = asyncio.create_task(transport.handle_async_request(httpx.Request("GET", URL)))
        await wait_until(lambda: bulkhead.statistics().queued == 1)
        release.set()
        assert (await asyncio.wait_for(request, 30)).status_code == 200
    finally:
        release.set()
        thread.join(30)
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.available) == (0, 0, 1)
