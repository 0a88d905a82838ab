"""AsyncResilientTransport only: per-attempt timeouts, cancellation, concurrency, async fallbacks, events and the
testing mode. (Shared behaviour of both flavours is in test_http_transport.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER, Harness

from stalwart import BulkheadFullError, DeadlineExceeded, RetryGaveUp, RetryScheduled, add_hook, deadline, remove_hook
from stalwart._backoff import Backoff
from stalwart._breaker import CircuitState
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import testing

URL = "https://api.example.com/items"
ORIGIN = "http:https://api.example.com:443"


class Hanging(httpx.AsyncBaseTransport):
    """Hangs on the attempts listed in ``hang`` (1-based) until cancelled; answers 200 otherwise."""

    def __init__(self, hang: set[int]) -> None:
        self.hang = hang
        self.calls = 0
        self.cancelled = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls in self.hang:
            self.started.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return httpx.Response(200, text=f"attempt {self.calls}")


def assert_nothing_held(h: Harness) -> None:
    stats = h.registry.get_bulkhead(ORIGIN).statistics()
    assert (stats.active, stats.queued) == (0, 0)
    assert h.registry.get(ORIGIN).statistics().half_open_probes == 0


async def test_per_attempt_timeout_raises_deadline_exceeded_and_is_retried() -> None:
    inner = Hanging({1})
    h = Harness("async", inner=inner, config=ResilienceConfig(backoff=NO_JITTER, timeout=0.05))
    response = await h.request()
    assert response.text == "attempt 2"
    assert inner.cancelled == 1
    assert h.clock.sleeps == [1.0]
    assert h.registry.get(ORIGIN).statistics().calls >= 1
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert_nothing_held(h)


async def test_per_attempt_timeouts_count_as_breaker_failures_and_the_last_one_propagates() -> None:
    inner = Hanging({1, 2, 3})
    h = Harness("async", inner=inner, config=ResilienceConfig(backoff=NO_JITTER, timeout=0.02, failure_threshold=3))
    with pytest.raises(DeadlineExceeded) as info:
        await h.request()
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert info.value.timeout == pytest.approx(0.02)
    assert inner.cancelled == 3
    assert h.registry.get(ORIGIN).state is CircuitState.OPEN
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert_nothing_held(h)


async def test_outer_cancellation_propagates_and_releases_everything() -> None:
    inner = Hanging({1})
    h = Harness("async", inner=inner)
    task = asyncio.create_task(h.request())
    await inner.started.wait()
    assert h.registry.get_bulkhead(ORIGIN).statistics().active == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inner.calls == 1
    assert inner.cancelled == 1
    assert_nothing_held(h)
    assert h.registry.get(ORIGIN).statistics().calls == 0  # a cancellation is not an outcome


async def test_cancellation_during_a_backoff_sleep_propagates() -> None:
    h = Harness("async", [503, 200])
    entered = asyncio.Event()

    async def hang(seconds: float) -> None:
        entered.set()
        await asyncio.Event().wait()

    h.clock.asleep = hang  # type: ignore[method-assign]
    task = asyncio.create_task(h.request())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.upstream.responses[0].stream.closed  # type: ignore[attr-defined]
    assert_nothing_held(h)


async def test_an_enforced_ambient_deadline_is_left_to_its_scope() -> None:
    inner = Hanging({1})
    h = Harness("async", inner=inner)
    with pytest.raises(DeadlineExceeded):
        async with deadline(0.05):
            await h.request()
    assert inner.cancelled == 1
    assert inner.calls == 1  # the deadline passed: nothing is retried
    assert_nothing_held(h)


async def test_a_full_bulkhead_rejects_and_the_breaker_is_untouched() -> None:
    inner = Hanging({1})
    h = Harness("async", inner=inner, config=ResilienceConfig(max_concurrent=1, max_queue=0))
    first = asyncio.create_task(h.request())
    await inner.started.wait()
    with pytest.raises(BulkheadFullError):
        await h.request()
    inner.release.set()
    assert (await first).status_code == 200
    assert inner.calls == 1
    assert h.registry.get(ORIGIN).statistics().failure_count == 0
    assert_nothing_held(h)


async def test_many_concurrent_requests_some_cancelled_leak_nothing() -> None:
    gate = asyncio.Event()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await gate.wait()
        return httpx.Response(503 if calls % 3 == 0 else 200)

    h = Harness(
        "async",
        inner=httpx.MockTransport(handler),
        config=ResilienceConfig(backoff=NO_JITTER, max_concurrent=5, max_queue=1000, failure_threshold=1000),
    )
    tasks = [asyncio.create_task(h.request()) for _ in range(200)]
    for _ in range(5):
        await asyncio.sleep(0)
    for task in tasks[::4]:
        task.cancel()
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
    assert cancelled == 50
    assert all(isinstance(r, httpx.Response | asyncio.CancelledError) for r in results)
    assert_nothing_held(h)


async def test_async_fallback() -> None:
    async def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(200, text=type(exc).__name__)

    h = Harness("async", [httpx.ConnectError("down")], fallback=fallback)
    response = await h.request()
    assert response.text == "ConnectError"
    assert h.upstream.calls == 3


async def test_fallback_never_sees_cancellation() -> None:
    inner = Hanging({1})
    seen: list[BaseException] = []
    h = Harness("async", inner=inner, fallback=lambda request, exc: seen.append(exc) or httpx.Response(200))
    task = asyncio.create_task(h.request())
    await inner.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == []


async def test_sync_transport_refuses_an_async_fallback() -> None:
    async def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        return httpx.Response(200)

    with pytest.raises(TypeError, match="sync fallback"):
        ResilientTransport(httpx.MockTransport(lambda r: httpx.Response(200)), fallback=fallback)


async def test_events_describe_the_retries() -> None:
    events: list[Any] = []
    hook = events.append
    add_hook(hook)
    try:
        h = Harness("async", [(429, {"Retry-After": "3"}), 503, 503])
        await h.request()
    finally:
        remove_hook(hook)
    scheduled = [e for e in events if isinstance(e, RetryScheduled)]
    gave_up = [e for e in events if isinstance(e, RetryGaveUp)]
    assert [(e.name, e.attempt, e.delay, e.reason) for e in scheduled] == [
        (ORIGIN, 1, 3.0, "retry_after"),
        (ORIGIN, 2, 2.0, "backoff"),  # the schedule counts attempts: n = 1 after pushback at n = 0
    ]
    assert [(e.name, e.attempts, e.reason, e.outcome) for e in gave_up] == [(ORIGIN, 3, "max_attempts", None)]


async def test_no_events_for_a_plain_success_or_a_non_retryable_first_attempt() -> None:
    events: list[Any] = []
    hook = events.append
    add_hook(hook)
    try:
        h = Harness("async", [200])
        await h.request()
        h2 = Harness("async", [404])
        await h2.request()
    finally:
        remove_hook(hook)
    assert [e for e in events if isinstance(e, RetryScheduled | RetryGaveUp)] == []


async def test_testing_mode_caps_attempts_and_skips_sleeps() -> None:
    h = Harness("async", [(503, {"Retry-After": "30"})], config=ResilienceConfig(max_attempts=5))
    with testing(attempts=2):
        response = await h.request()
    assert response.status_code == 503
    assert h.upstream.calls == 2
    assert h.clock.sleeps == [0.0]


class Scripted(httpx.AsyncBaseTransport):
    """Answers from a script without reading the request body (so any body flavour can be sent)."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if isinstance(step, BaseException):
            raise step
        return httpx.Response(step)


async def test_a_body_that_cannot_be_read_ahead_is_sent_once() -> None:
    inner = Scripted([503, 200])
    h = Harness("async", inner=inner)
    request = httpx.Request("PUT", URL, content=iter([b"a", b"b"]))  # a sync iterator: not for the async transport
    response = await h.send(request)
    assert response.status_code == 503
    assert inner.calls == 1


async def test_a_body_that_cannot_be_read_ahead_is_resent_after_a_failed_connection() -> None:
    inner = Scripted([httpx.ConnectError("refused"), 200])
    h = Harness("async", inner=inner)
    request = httpx.Request("PUT", URL, content=iter([b"a", b"b"]))
    response = await h.send(request)
    assert response.status_code == 200
    assert inner.calls == 2


async def test_per_attempt_timeout_on_the_system_clock() -> None:
    inner = Hanging({1})
    transport = AsyncResilientTransport(
        inner, config=ResilienceConfig(timeout=0.05, backoff=Backoff.constant(0.0)), registry=Registry()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(URL)
    assert response.text == "attempt 2"
    assert inner.cancelled == 1
    assert transport._watchdog is not None
    assert transport._watchdog.loop_clock  # monotonic readings stand in for loop.time()
