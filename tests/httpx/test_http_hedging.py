"""Hedged requests in AsyncResilientTransport: the race, its losers, the budget, the rules around it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER, TrackedStream
from _http_server import hang, respond, scripted_server

from stalwart import (
    CallRejected,
    CircuitOpenError,
    DeadlineExceeded,
    Hedge,
    HedgeStarted,
    RetryBudget,
    RetryBudgetExhausted,
    add_hook,
    deadline,
    remove_hook,
)
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock, testing

URL = "https://api.example.com/items"
ORIGIN = "http:https://api.example.com:443"


class Wait:
    """A step that answers ``status`` once ``event`` is set."""

    def __init__(self, status: int = 200) -> None:
        self.event = asyncio.Event()
        self.status = status


HANG = "hang"


class Plan(httpx.AsyncBaseTransport):
    """An inner transport scripted per attempt number (from the attempt header): a status, an exception, ``HANG``
    (until cancelled) or a :class:`Wait`. Records what each attempt saw and which attempts were cancelled."""

    def __init__(self, plan: dict[int, Any], default: Any = 200) -> None:
        self.plan = plan
        self.default = default
        self.attempts: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.cancelled: list[int] = []
        self.responses: dict[int, httpx.Response] = {}
        self.entered = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        number = int(request.headers["stalwart-attempt"])
        self.attempts.append(number)
        self.headers.append(dict(request.headers))
        self.bodies.append(await request.aread())
        self.entered.set()
        step = self.plan.get(number, self.default)
        try:
            if step == HANG:
                await asyncio.Event().wait()
            elif isinstance(step, Wait):
                await step.event.wait()
                step = step.status
        except asyncio.CancelledError:
            self.cancelled.append(number)
            raise
        if isinstance(step, BaseException):
            raise step
        response = httpx.Response(step, stream=TrackedStream(f"attempt {number}".encode()))
        self.responses[number] = response
        return response


class Side:
    def __init__(self, plan: Plan, *, clock: Any = None, **config: Any) -> None:
        self.plan = plan
        self.clock = FakeClock() if clock is None else clock
        self.registry = Registry()
        settings = ResilienceConfig(**{"backoff": NO_JITTER, "hedge": 0.1, **config})
        self.transport = AsyncResilientTransport(plan, config=settings, registry=self.registry, clock=self.clock)
        self.client = httpx.AsyncClient(transport=self.transport)

    async def get(self, url: str = URL, **kwargs: Any) -> httpx.Response:
        return await self.client.get(url, **kwargs)

    def assert_nothing_held(self) -> None:
        stats = self.registry.get_bulkhead(ORIGIN).statistics()
        assert (stats.active, stats.queued) == (0, 0)
        assert self.registry.get(ORIGIN).statistics().half_open_probes == 0


async def settle_loop(turns: int = 10) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


# --- the race -----------------------------------------------------------------------------------------------------


async def test_the_hedge_wins_when_the_primary_hangs_and_the_primary_is_cancelled() -> None:
    side = Side(Plan({1: HANG}))
    response = await side.get()
    assert response.text == "attempt 2"
    assert side.plan.attempts == [1, 2]
    assert side.plan.cancelled == [1]  # cancelled and awaited before the call returned
    assert side.clock.sleeps == [0.1]  # the hedge delay, on the transport's clock
    side.assert_nothing_held()


async def test_each_hedge_sent_emits_hedge_started() -> None:
    events: list[Any] = []
    add_hook(events.append)
    try:
        side = Side(Plan({1: HANG, 2: HANG}), hedge=Hedge(0.1, max_hedged=2))
        response = await side.get()
    finally:
        remove_hook(events.append)
    assert response.text == "attempt 3"
    started = [event for event in events if isinstance(event, HedgeStarted)]
    assert started == [HedgeStarted(ORIGIN, 2, 0.1, "delay"), HedgeStarted(ORIGIN, 3, 0.2, "delay")]


async def test_a_fast_primary_sends_no_hedge() -> None:
    side = Side(Plan({}), clock=None)
    side.transport = AsyncResilientTransport(
        side.plan, config=ResilienceConfig(hedge=10.0), registry=Registry()
    )  # system clock: the 10 s timer is a loop timer
    async with httpx.AsyncClient(transport=side.transport) as client:
        response = await client.get(URL)
    assert response.text == "attempt 1"
    assert side.plan.attempts == [1]


async def test_the_primary_can_still_win_after_the_hedge_started() -> None:
    primary = Wait(200)
    plan = Plan({1: primary, 2: HANG})
    side = Side(plan)
    task = asyncio.create_task(side.get())
    while plan.attempts != [1, 2]:
        await asyncio.sleep(0)
    primary.event.set()
    response = await task
    assert response.text == "attempt 1"
    assert plan.cancelled == [2]
    side.assert_nothing_held()


async def test_up_to_max_hedged_extra_attempts_and_a_failed_hedge_does_not_end_the_race() -> None:
    plan = Plan({1: HANG, 2: 503, 3: 200})
    side = Side(plan, hedge=Hedge(0.1, max_hedged=2))
    response = await side.get()
    assert response.text == "attempt 3"
    assert plan.responses[2].stream.closed  # type: ignore[attr-defined]  # the discarded 503 was closed
    assert plan.cancelled == [1]
    side.assert_nothing_held()


async def test_a_loser_that_answered_anyway_is_closed() -> None:
    primary, hedge = Wait(200), Wait(200)
    plan = Plan({1: primary, 2: hedge})
    side = Side(plan)
    task = asyncio.create_task(side.get())
    while plan.attempts != [1, 2]:
        await asyncio.sleep(0)
    primary.event.set()
    hedge.event.set()  # both answer in the same turn of the loop
    response = await task
    assert response.status_code == 200
    winner = int(response.text.split()[-1])
    loser = plan.responses[3 - winner]
    assert loser.stream.closed  # type: ignore[attr-defined]
    assert response.text == f"attempt {winner}"


async def test_an_exception_that_is_not_transient_is_the_answer() -> None:
    plan = Plan({1: HANG, 2: ValueError("bug")})
    side = Side(plan)
    with pytest.raises(ValueError, match="bug"):
        await side.get()
    assert plan.cancelled == [1]
    side.assert_nothing_held()


async def test_a_race_where_every_attempt_fails_is_retried_with_single_attempts() -> None:
    primary = Wait(503)
    third = Wait(200)
    plan = Plan({1: primary, 2: 502, 3: third})
    side = Side(plan)
    task = asyncio.create_task(side.get())
    while plan.attempts != [1, 2]:
        await asyncio.sleep(0)
    await settle_loop()
    primary.event.set()  # both have failed: the race is over, the retry loop backs off (1 s) and tries once more
    while plan.attempts != [1, 2, 3]:
        await asyncio.sleep(0)
    await settle_loop()
    assert plan.attempts == [1, 2, 3]  # no hedge in the retry: attempt 3 is alone
    third.event.set()
    response = await task
    assert response.text == "attempt 3"
    assert side.clock.sleeps == [0.1, 1.0]
    assert plan.responses[1].stream.closed  # type: ignore[attr-defined]
    assert plan.responses[2].stream.closed  # type: ignore[attr-defined]


async def test_when_every_attempt_fails_the_last_outcome_is_returned() -> None:
    side = Side(Plan({}, default=503), max_attempts=1, hedge=0.0)
    response = await side.get()
    assert response.status_code == 503
    side.assert_nothing_held()


async def test_transient_errors_give_up_with_the_last_error_and_a_note() -> None:
    plan = Plan({}, default=httpx.ReadError("reset"))
    side = Side(plan, max_attempts=2)
    with pytest.raises(httpx.ReadError) as info:
        await side.get()
    assert plan.attempts == [1, 2]  # the primary failed before the delay: no hedge; then one retry
    assert any("gave up after 2 attempts" in note for note in info.value.__notes__)


async def test_a_per_attempt_timeout_cuts_hedged_attempts() -> None:
    plan = Plan({1: HANG, 2: HANG}, default=200)
    side = Side(plan, hedge=0.0, timeout=0.02)
    response = await side.get()
    assert response.text == "attempt 3"
    assert sorted(plan.cancelled) == [1, 2]
    side.assert_nothing_held()


# --- which requests are hedged ------------------------------------------------------------------------------------


async def test_a_post_without_key_is_never_hedged() -> None:
    primary = Wait(201)
    plan = Plan({1: primary})
    side = Side(plan)
    task = asyncio.create_task(side.client.post(URL, content=b"charge"))
    await plan.entered.wait()
    await settle_loop(20)
    assert plan.attempts == [1]
    assert side.clock.sleeps == []
    primary.event.set()
    assert (await task).status_code == 201


async def test_a_post_with_a_key_is_hedged_with_the_same_key_and_body() -> None:
    plan = Plan({1: HANG}, default=201)
    side = Side(plan)
    response = await side.client.post(URL, content=b"charge", headers={"Idempotency-Key": "k-9"})
    assert response.status_code == 201
    assert [headers["idempotency-key"] for headers in plan.headers] == ["k-9", "k-9"]
    assert plan.bodies == [b"charge", b"charge"]


async def test_each_attempt_is_a_copy_with_its_own_headers_and_the_callers_request_is_untouched() -> None:
    plan = Plan({1: HANG})
    side = Side(plan)
    request = side.client.build_request("GET", URL, headers={"X-Trace": "t1"})
    with deadline(5.0, clock=side.clock):
        response = await side.client.send(request)
    assert [headers["stalwart-attempt"] for headers in plan.headers] == ["1", "2"]
    assert [headers["request-deadline-ms"] for headers in plan.headers] == ["5000", "4900"]
    assert [headers["x-trace"] for headers in plan.headers] == ["t1", "t1"]
    assert response.request is request
    assert "stalwart-attempt" not in request.headers
    assert "request-deadline-ms" not in request.headers


async def test_an_expired_deadline_sends_nothing() -> None:
    plan = Plan({})
    side = Side(plan)
    with deadline(1.0, clock=side.clock):
        side.clock.advance(1.0)
        with pytest.raises(DeadlineExceeded):
            await side.get()
    assert plan.attempts == []


async def test_no_hedge_starts_at_or_after_the_deadline() -> None:
    primary = Wait(200)
    plan = Plan({1: primary})
    side = Side(plan, hedge=1.0)
    with deadline(0.5, clock=side.clock):
        task = asyncio.create_task(side.get())
        await plan.entered.wait()
        await settle_loop(20)  # the fake timer has fired (1 s passed): the deadline has too
        assert plan.attempts == [1]
        primary.event.set()
        assert (await task).text == "attempt 1"


async def test_an_open_circuit_is_raised_at_once() -> None:
    plan = Plan({})
    side = Side(plan)
    side.transport.origin(httpx.URL(URL)).breaker.force_open()  # type: ignore[union-attr]
    with pytest.raises(CircuitOpenError):
        await side.get()
    assert plan.attempts == []


async def test_the_testing_mode_caps_the_race_too() -> None:
    primary = Wait(200)
    plan = Plan({1: primary})
    side = Side(plan)
    with testing(attempts=1):
        task = asyncio.create_task(side.get())
        await plan.entered.wait()
        await settle_loop(20)
        assert plan.attempts == [1]
        primary.event.set()
        assert (await task).text == "attempt 1"


# --- budget -------------------------------------------------------------------------------------------------------


async def test_hedges_draw_from_the_retry_budget() -> None:
    events: list[Any] = []
    add_hook(events.append)
    try:
        budget = RetryBudget("shared", max_tokens=2, token_ratio=0.1)  # 2 tokens: retries only above 1
        budget.record_failure(False)  # 1 token left: the next retry (or hedge) is refused
        primary = Wait(200)
        plan = Plan({1: primary})
        side = Side(plan, budget=budget)
        task = asyncio.create_task(side.get())
        await plan.entered.wait()
        await settle_loop(20)
        assert plan.attempts == [1]  # the hedge was refused
        primary.event.set()
        assert (await task).text == "attempt 1"
    finally:
        remove_hook(events.append)
    assert [(e.name, e.attempt) for e in events if isinstance(e, RetryBudgetExhausted)] == [("shared", 1)]
    assert [e for e in events if isinstance(e, CallRejected)] == [CallRejected("shared", "budget")]
    assert budget.statistics().refused == 1


async def test_only_completed_attempts_are_recorded_once_as_the_first() -> None:
    calls: list[tuple[str, bool | None]] = []

    class Spy:
        name = "spy"

        def record_success(self, first: bool) -> None:
            calls.append(("success", first))

        def record_failure(self, first: bool) -> None:
            calls.append(("failure", first))

        def try_acquire_retry(self) -> bool:
            calls.append(("acquire", None))
            return True

    side = Side(Plan({1: HANG}), budget=Spy())
    await side.get()
    assert calls == [("acquire", None), ("success", True)]  # the cancelled primary recorded nothing


# --- cancellation -------------------------------------------------------------------------------------------------


async def test_cancelling_the_caller_cancels_every_attempt_and_releases_everything() -> None:
    plan = Plan({1: HANG, 2: HANG})
    side = Side(plan)
    task = asyncio.create_task(side.get())
    while plan.attempts != [1, 2]:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(plan.cancelled) == [1, 2]
    side.assert_nothing_held()
    assert side.registry.get(ORIGIN).statistics().calls == 0


# --- learned delay ------------------------------------------------------------------------------------------------


async def test_a_learned_delay_records_the_primary() -> None:
    learned = Hedge.percentile(0.95, initial=0.1, min_samples=1)
    side = Side(Plan({1: HANG}), hedge=learned)
    await side.get()  # a hedge won: the primary's age at that moment is recorded (censored)
    await side.get(URL + "?fast")  # attempt numbers restart: the primary answers at once
    assert learned.samples == 2


# --- configuration ------------------------------------------------------------------------------------------------


def test_config_normalises_hedge() -> None:
    assert ResilienceConfig().hedge is None
    hedge = ResilienceConfig(hedge=0.25).hedge
    assert isinstance(hedge, Hedge)
    assert (hedge.delay, hedge.max_hedged) == (0.25, 1)
    assert ResilienceConfig(hedge=timedelta(milliseconds=50)).hedge.delay == 0.05  # type: ignore[union-attr]
    mine = Hedge(0.1, max_hedged=3)
    assert ResilienceConfig(hedge=mine).hedge is mine
    learned = Hedge.percentile(0.9)
    assert ResilienceConfig(hedge=learned).hedge.delay == learned.current  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="hedge"):
        ResilienceConfig(hedge=-1.0)
    with pytest.raises(TypeError, match="hedge"):
        ResilienceConfig(hedge="fast")  # type: ignore[arg-type]


def test_the_sync_transport_refuses_hedging() -> None:
    with pytest.raises(ValueError, match="AsyncResilientTransport"):
        ResilientTransport(httpx.MockTransport(lambda r: httpx.Response(200)), config=ResilienceConfig(hedge=0.1))


# --- loopback -----------------------------------------------------------------------------------------------------


async def test_loopback_the_first_attempt_hangs_and_the_hedge_wins() -> None:
    config = ResilienceConfig(backoff=NO_JITTER, hedge=0.05)
    with scripted_server([hang, respond(200)]) as server:
        transport = AsyncResilientTransport(config=config, registry=Registry())
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(server.url + "/slow")
        assert (response.status_code, response.text) == (200, "attempt 2")
        assert server.attempts() == ["1", "2"]
        assert len(server.connections) == 2  # the hung connection was abandoned, the hedge used another
