"""Regression: the HTTP transport could not take an ``AdaptiveTimeout`` as its per-attempt timeout (issue 6).

What was wrong: issue 6 asks for an adaptive timeout "usable as the per-attempt timeout of ``Pipeline`` and of the
transport, and always clamped by the ambient deadline", but ``ResilienceConfig(timeout=AdaptiveTimeout(...))``
raised ``TypeError`` (``timeout`` took seconds only). Now the transports read the estimate per attempt
(``current_limit(key)``, keyed by origin, or by origin and operation when ``operations`` cover the request), clamp
it by the ambient deadline, record every response's duration, and record an attempt cut by that limit at the limit
(a censored sample, so the estimate grows when the dependency slows down); an attempt cut by the ambient deadline,
or failing otherwise, records nothing. Both drivers and the hedged path. Time is a ``FakeClock``; the async
watchdog's cuts are real but short timers on hanging attempts (no assertion on how long anything took).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from stalwart import AdaptiveTimeout, DeadlineExceeded, deadline
from stalwart._backoff import Backoff
from stalwart._registry import Registry
from stalwart.httpx import (
    AsyncResilientTransport,
    Operation,
    ResilienceConfig,
    ResilientClient,
    ResilientTransport,
)
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"
KEY = "http:https://api.example.com:443"


def _adaptive(**kwargs: Any) -> AdaptiveTimeout:
    settings: dict[str, Any] = {"initial": 5.0, "minimum": 0.01, "maximum": 30.0, "multiplier": 1.5, "min_samples": 1}
    return AdaptiveTimeout(**{**settings, **kwargs})


class Upstream:
    """Each request takes ``took`` seconds on the fake clock, then answers ``status`` or raises ``error``; records
    the deadline header and httpx's per-phase timeouts each attempt carried."""

    def __init__(self, clock: FakeClock, took: float = 0.2, status: int = 200, error: Any = None) -> None:
        self.clock = clock
        self.took = took
        self.status = status
        self.error = error
        self.deadline_ms: list[str | None] = []
        self.timeouts: list[dict[str, Any]] = []

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.deadline_ms.append(request.headers.get("request-deadline-ms"))
        self.timeouts.append(dict(request.extensions.get("timeout") or {}))
        self.clock.advance(self.took)
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status)

    def handler(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request)

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request)


def _async(upstream: Upstream, **config: Any) -> httpx.AsyncClient:
    settings = ResilienceConfig(**{"max_attempts": 1, **config})
    transport = AsyncResilientTransport(
        httpx.MockTransport(upstream.ahandler), config=settings, registry=Registry(), clock=upstream.clock
    )
    return httpx.AsyncClient(transport=transport)


def _sync(upstream: Upstream, **config: Any) -> httpx.Client:
    settings = ResilienceConfig(**{"max_attempts": 1, **config})
    transport = ResilientTransport(
        httpx.MockTransport(upstream.handler), config=settings, registry=Registry(), clock=upstream.clock
    )
    return httpx.Client(transport=transport)


def test_the_config_takes_an_adaptive_timeout() -> None:
    adaptive = _adaptive()
    assert ResilienceConfig(timeout=adaptive).timeout is adaptive
    with pytest.raises(TypeError, match="AdaptiveTimeout"):
        ResilienceConfig(timeout=adaptive.for_key("a"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout"):
        ResilienceConfig(timeout="1s")  # type: ignore[arg-type]


async def test_async_attempts_use_and_feed_the_estimate_of_their_origin() -> None:
    clock = FakeClock()
    adaptive = _adaptive()
    upstream = Upstream(clock, took=0.2)
    async with _async(upstream, timeout=adaptive) as client:
        with deadline(100.0, clock=clock):  # the deadline header shows each attempt's limit
            assert (await client.get(URL)).status_code == 200
            assert (await client.get(URL)).status_code == 200
    assert upstream.deadline_ms == ["5000", "300"]  # initial, then 1.5 x the 0.2 s recorded
    assert adaptive.samples_for(KEY) == 2
    assert adaptive.samples == 0  # the default key is untouched


def test_sync_attempts_clamp_httpx_timeouts_to_the_estimate_and_feed_it() -> None:
    clock = FakeClock()
    adaptive = _adaptive()
    upstream = Upstream(clock, took=0.2, status=503)  # any response is a latency sample
    with _sync(upstream, timeout=adaptive) as client:
        client.get(URL)
        client.get(URL)
    assert [t["read"] for t in upstream.timeouts] == [5.0, pytest.approx(0.3)]
    assert adaptive.samples_for(KEY) == 2


async def test_each_origin_and_each_operation_has_its_own_estimate() -> None:
    clock = FakeClock()
    adaptive = _adaptive()
    upstream = Upstream(clock, took=0.2)
    search = Operation("search", 5, paths=["/search*"])
    async with _async(upstream, timeout=adaptive, operations=(search,)) as client:
        await client.get("https://api.example.com/search?q=x")
        await client.get("https://api.example.com/items")
        await client.get("https://other.example.com/items")
    assert adaptive.samples_for(f"{KEY}:search") == 1
    assert adaptive.samples_for(KEY) == 1
    assert adaptive.samples_for("http:https://other.example.com:443") == 1
    assert adaptive.tracked_keys == 3


async def test_an_async_attempt_cut_by_its_limit_is_a_censored_sample() -> None:
    adaptive = _adaptive(initial=0.02)

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    config = ResilienceConfig(timeout=adaptive, max_attempts=1)
    transport = AsyncResilientTransport(
        httpx.MockTransport(hang), config=config, registry=Registry(), clock=FakeClock()
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(DeadlineExceeded):
            await client.get(URL)
    assert adaptive.samples_for(KEY) == 1
    assert adaptive.current_limit(KEY) == pytest.approx(0.03)  # 1.5 x the 0.02 s limit it was cut at


async def test_an_attempt_cut_by_the_ambient_deadline_records_nothing() -> None:
    adaptive = _adaptive()

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    clock = FakeClock()
    config = ResilienceConfig(timeout=adaptive, max_attempts=1)
    transport = AsyncResilientTransport(httpx.MockTransport(hang), config=config, registry=Registry(), clock=clock)
    async with httpx.AsyncClient(transport=transport) as client:
        with deadline(0.02, clock=clock), pytest.raises(DeadlineExceeded):
            await client.get(URL)
    assert adaptive.samples_for(KEY) == 0


def test_sync_timeouts_record_the_limit_only_when_the_limit_was_reached() -> None:
    clock = FakeClock()
    adaptive = _adaptive(initial=0.5)
    slow = Upstream(clock, took=0.5, error=httpx.ReadTimeout("read timed out"))
    with _sync(slow, timeout=adaptive) as client, pytest.raises(httpx.ReadTimeout):
        client.get(URL)
    assert adaptive.current_limit(KEY) == pytest.approx(0.75)  # censored at 0.5 s
    quick = Upstream(clock, took=0.1, error=httpx.ReadTimeout("the caller's own shorter read timeout"))
    with _sync(quick, timeout=adaptive) as client, pytest.raises(httpx.ReadTimeout):
        client.get(URL)
    assert adaptive.samples_for(KEY) == 1  # not the adaptive limit's doing: nothing learned
    with _sync(slow, timeout=adaptive) as client, deadline(0.6, clock=clock), pytest.raises(httpx.ReadTimeout):
        client.get(URL)  # the deadline (0.6 s) is tighter than the limit (0.75 s): its cut says nothing
    assert adaptive.samples_for(KEY) == 1


async def test_hedged_attempts_use_and_feed_the_estimate() -> None:
    adaptive = _adaptive(initial=0.02)
    answered = 0

    async def primary_hangs(request: httpx.Request) -> httpx.Response:
        nonlocal answered
        if request.headers["stalwart-attempt"] == "1":
            await asyncio.Event().wait()
        answered += 1
        return httpx.Response(200)

    # The system clock: the hedge's 5 s timer never fires (a fake clock's sleeps end at once); no backoff.
    config = ResilienceConfig(timeout=adaptive, hedge=5.0, max_attempts=2, backoff=Backoff.constant(0.0))
    transport = AsyncResilientTransport(httpx.MockTransport(primary_hangs), config=config, registry=Registry())
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(URL)).status_code == 200  # the primary is cut at 0.02 s; the retry answers
    assert answered == 1
    assert adaptive.samples_for(KEY) == 2  # the cut (censored) and the answer


async def test_resilient_client_takes_an_adaptive_timeout() -> None:
    adaptive = _adaptive()
    async with ResilientClient("api", "https://api.example.com", ResilienceConfig(timeout=adaptive)) as client:
        assert client.client.timeout.read is None  # the transport enforces the adaptive limit per attempt
        assert client.transport.config.timeout is adaptive
