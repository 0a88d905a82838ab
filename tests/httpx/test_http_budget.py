"""The transports' retry budget: one per origin by default, shared instances, factories, refusal, bookkeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER, Harness
from _http_server import respond, scripted_server

from stalwart import (
    Backoff,
    CallRejected,
    RatioRetryBudget,
    RetryBudget,
    RetryBudgetExhausted,
    RetryGaveUp,
    add_hook,
    remove_hook,
)
from stalwart._clock import Clock
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, PerOriginBudget, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"
ORIGIN = "http:https://api.example.com:443"


def config(**kwargs: Any) -> ResilienceConfig:
    return ResilienceConfig(backoff=NO_JITTER, **kwargs)


class SpyBudget:
    """Records every call of the hook protocol; grants retries while ``allow`` is true."""

    def __init__(self, allow: bool = True) -> None:
        self.name = "spy"
        self.allow = allow
        self.calls: list[tuple[str, bool | None]] = []

    def record_success(self, first: bool) -> None:
        self.calls.append(("success", first))

    def record_failure(self, first: bool) -> None:
        self.calls.append(("failure", first))

    def try_acquire_retry(self) -> bool:
        self.calls.append(("acquire", None))
        return self.allow


@pytest.fixture
def events() -> Iterator[list[Any]]:
    seen: list[Any] = []
    add_hook(seen.append)
    try:
        yield seen
    finally:
        remove_hook(seen.append)


@pytest.fixture(params=["async", "sync"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- defaults -----------------------------------------------------------------------------------------------------


def test_the_default_is_a_ratio_budget_per_origin_with_finagles_defaults() -> None:
    assert ResilienceConfig().budget == PerOriginBudget(percent=20.0, ttl=10.0, min_per_second=10)
    transport = AsyncResilientTransport(httpx.MockTransport(lambda r: httpx.Response(200)), registry=Registry())
    first = transport.origin(httpx.URL("https://a.example.com/x")).budget
    second = transport.origin(httpx.URL("https://b.example.com/x")).budget
    assert isinstance(first, RatioRetryBudget)
    assert isinstance(second, RatioRetryBudget)
    assert first is not second
    assert (first.name, second.name) == ("http:https://a.example.com:443", "http:https://b.example.com:443")
    assert (first.percent, first.ttl) == (20.0, 10.0)
    assert transport.origin(httpx.URL("https://a.example.com/y")).budget is first


async def test_a_factory_builds_one_budget_per_origin_on_the_transports_clock(mode: str) -> None:
    built: list[tuple[str, Clock]] = []

    def factory(name: str, clock: Clock) -> RetryBudget:
        built.append((name, clock))
        return RetryBudget(name, max_tokens=5)

    h = Harness(mode, [200], config=config(budget=factory))
    await h.request()
    await h.request(url="https://api.example.com/other")
    assert built == [(ORIGIN, h.clock)]


async def test_a_shared_instance_serves_every_origin(mode: str) -> None:
    shared = RetryBudget("fleet", max_tokens=10)
    h = Harness(mode, [200], config=config(budget=shared))
    await h.request(url="https://a.example.com/")
    await h.request(url="https://b.example.com/")
    origins = h.transport._origins.values()
    assert [origin.budget for origin in origins] == [shared, shared]


async def test_no_budget_without_retries_unless_one_is_shared(mode: str) -> None:
    h = Harness(mode, [200], config=config(max_attempts=1))
    await h.request()
    assert h.transport.origin(httpx.URL(URL)).budget is None
    shared = SpyBudget()
    h2 = Harness(mode, [200], config=config(max_attempts=1, budget=shared))
    await h2.request()
    assert shared.calls == [("success", True)]  # a shared budget still counts the calls


async def test_budget_none_disables_it(mode: str) -> None:
    h = Harness(mode, [503], config=config(budget=None, use_breaker=False))
    for _ in range(20):
        assert (await h.request()).status_code == 503
    assert h.transport.origin(httpx.URL(URL)).budget is None
    assert h.upstream.calls == 60


async def test_a_factory_returning_no_budget_is_a_type_error(mode: str) -> None:
    h = Harness(mode, [200], config=config(budget=lambda name, clock: "budget"))
    with pytest.raises(TypeError, match="budget factory"):
        await h.request()


# --- bookkeeping --------------------------------------------------------------------------------------------------


async def test_each_attempt_records_its_outcome_and_each_retry_asks_first(mode: str) -> None:
    spy = SpyBudget()
    h = Harness(mode, [503, httpx.ReadError("reset"), 200], config=config(budget=spy))
    assert (await h.request()).status_code == 200
    assert spy.calls == [
        ("failure", True),
        ("acquire", None),
        ("failure", False),
        ("acquire", None),
        ("success", False),
    ]


@pytest.mark.parametrize("status", [200, 404, 501])
async def test_a_response_not_worth_retrying_is_a_success(mode: str, status: int) -> None:
    spy = SpyBudget()
    h = Harness(mode, [status], config=config(budget=spy))
    await h.request()
    assert spy.calls == [("success", True)]


async def test_a_retryable_outcome_that_may_not_be_retried_still_counts_as_a_failure(mode: str) -> None:
    spy = SpyBudget()
    h = Harness(mode, [503], config=config(budget=spy))
    assert (await h.request("POST", content=b"x")).status_code == 503
    assert spy.calls == [("failure", True)]  # no retry was possible: nothing to acquire


async def test_a_non_transient_error_records_nothing(mode: str) -> None:
    spy = SpyBudget()
    h = Harness(mode, [ValueError("bug")], config=config(budget=spy))
    with pytest.raises(ValueError, match="bug"):
        await h.request()
    assert spy.calls == []


async def test_cancellation_records_nothing() -> None:
    spy = SpyBudget()
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    h = Harness("async", inner=httpx.MockTransport(hang), config=config(budget=spy))
    task = asyncio.create_task(h.request())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spy.calls == []


async def test_an_open_breaker_ends_the_retries_before_the_budget_is_asked(mode: str) -> None:
    spy = SpyBudget()
    h = Harness(mode, [503], config=config(budget=spy, failure_threshold=1, success_threshold=1, half_open_max_calls=1))
    assert (await h.request()).status_code == 503
    assert spy.calls == [("failure", True)]


# --- refusal ------------------------------------------------------------------------------------------------------


async def test_a_refused_retry_returns_the_last_response_with_events(mode: str, events: list[Any]) -> None:
    spy = SpyBudget(allow=False)
    h = Harness(mode, [503, 200], config=config(budget=spy))
    response = await h.request()
    assert response.status_code == 503
    assert h.upstream.calls == 1
    assert h.clock.sleeps == []
    assert [(e.name, e.attempt) for e in events if isinstance(e, RetryBudgetExhausted)] == [("spy", 1)]
    assert [e for e in events if isinstance(e, CallRejected)] == [CallRejected("spy", "budget")]
    gave_up = [e for e in events if isinstance(e, RetryGaveUp)]
    assert [(e.name, e.attempts, e.reason) for e in gave_up] == [(ORIGIN, 1, "budget")]


async def test_a_refused_retry_raises_the_last_error_with_a_note(mode: str) -> None:
    spy = SpyBudget(allow=False)
    h = Harness(mode, [httpx.ConnectError("refused"), 200], config=config(budget=spy))
    with pytest.raises(httpx.ConnectError) as info:
        await h.request()
    assert h.upstream.calls == 1
    assert any("retry budget is exhausted" in note for note in info.value.__notes__)


async def test_a_token_bucket_shared_by_callers_stops_a_retry_storm(mode: str) -> None:
    # gRPC throttling: 4 tokens, retries only above 2. The first call's failure leaves 3 (retry), its retry's
    # failure leaves 2 (refused); every later failure is refused.
    budget = RetryBudget("upstream", max_tokens=4, token_ratio=0.5)
    h = Harness(mode, [503], config=config(budget=budget, use_breaker=False))
    for _ in range(10):
        assert (await h.request()).status_code == 503
    assert h.upstream.calls == 11
    stats = budget.statistics()
    assert (stats.granted, stats.refused) == (1, 10)


async def test_a_ratio_budget_allows_percent_of_the_recent_calls(mode: str) -> None:
    # 50 %, no reserve: each call deposits one unit, each retry costs two.
    budget = PerOriginBudget(percent=50.0, min_per_second=0)
    no_wait = Backoff.constant(0.0)  # the fake clock stands still: every deposit stays in the window
    h = Harness(mode, [200] * 10 + [503], config=ResilienceConfig(backoff=no_wait, budget=budget, use_breaker=False))
    for _ in range(10):
        await h.request()
    for _ in range(10):
        assert (await h.request()).status_code == 503
    # 20 calls deposited 20 units: 10 retries over the 10 failing calls (greedily, the first ones get two).
    assert h.upstream.calls == 20 + 10
    h.clock.advance(10.0)  # the window has passed: the deposits have expired
    calls = h.upstream.calls
    assert (await h.request()).status_code == 503
    assert h.upstream.calls == calls + 1


async def test_the_window_runs_on_the_transports_clock(mode: str) -> None:
    budget = PerOriginBudget(percent=100.0, ttl=1.0, min_per_second=0)
    h = Harness(mode, [200, 503], config=ResilienceConfig(backoff=Backoff.constant(0.0), budget=budget))
    await h.request()  # deposits one retry
    h.clock.advance(2.0)  # on the transport's (fake) clock, that deposit has expired
    assert (await h.request()).status_code == 503
    assert h.upstream.calls == 1 + 2  # the failing call's own deposit pays for one retry, not two


# --- loopback -----------------------------------------------------------------------------------------------------


async def test_loopback_outage_the_budget_caps_the_upstreams_load(mode: str) -> None:
    budget = RetryBudget("upstream", max_tokens=4, token_ratio=0.5)
    options: dict[str, Any] = {
        "config": config(budget=budget, use_breaker=False),
        "registry": Registry(),
        "clock": FakeClock(),
    }
    with scripted_server([respond(503)]) as server:
        if mode == "async":
            async with httpx.AsyncClient(transport=AsyncResilientTransport(**options)) as client:
                for _ in range(10):
                    assert (await client.get(server.url)).status_code == 503
        else:
            with httpx.Client(transport=ResilientTransport(**options)) as sync_client:
                for _ in range(10):
                    response = await asyncio.to_thread(sync_client.get, server.url)
                    assert response.status_code == 503
    assert server.count == 11  # 30 without the budget
    assert server.attempts() == ["1", "2"] + ["1"] * 9


# --- configuration ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"percent": 0.0}, ValueError, "percent"),
        ({"percent": 101.0}, ValueError, "percent"),
        ({"ttl": 0.0}, ValueError, "ttl"),
        ({"min_per_second": -1}, ValueError, "min_per_second"),
        ({"min_per_second": 1.5}, TypeError, "min_per_second"),
    ],
)
def test_per_origin_budget_validation(kwargs: dict[str, Any], error: type[Exception], field: str) -> None:
    with pytest.raises(error, match=field):
        PerOriginBudget(**kwargs)


@pytest.mark.parametrize("value", ["ratio", 20.0, object()])
def test_config_refuses_what_is_not_a_budget(value: object) -> None:
    with pytest.raises(TypeError, match="budget"):
        ResilienceConfig(budget=value)  # type: ignore[arg-type]
