"""The demo's measure of the retry budget: the upstream counts retries by their attempt header, the watch counts
the budget's refusals per phase, and the summary compares the outage load with the load without retries."""

from __future__ import annotations

import json

import httpx
import pytest

from stalwart import RatioRetryBudget, RetryBudget, RetryBudgetExhausted
from stalwart.cli.demo._outage import BudgetWatch
from stalwart.cli.demo._schedule import FaultSchedule
from stalwart.cli.demo._summary import (
    BUDGET_LIMIT,
    BudgetEffect,
    DemoResult,
    Outcome,
    due_between,
    summarize,
)
from stalwart.cli.demo._upstream import FaultUpstream
from stalwart.cli.demo._workload import arrival_offsets
from stalwart.testing import FakeClock

BUDGET_KEYS = [
    "no_retry_load_during_outage",
    "upstream_calls_during_outage",
    "retries_during_outage",
    "outage_load_ratio",
    "limit",
    "within_limit",
    "blip_retries",
    "blip_retries_refused",
    "retries_granted",
    "retries_refused",
]


def effect(**changes: int) -> BudgetEffect:
    values = {
        "no_retry_load": 400,
        "outage_calls": 25,
        "outage_retries": 3,
        "blip_retries": 4,
        "blip_refused": 0,
        "granted": 252,
        "refused": 0,
    }
    values.update(changes)
    return BudgetEffect(**values)


def test_ratio_and_limit() -> None:
    assert BUDGET_LIMIT == 1.2
    assert effect().ratio == pytest.approx(25 / 400)
    assert effect().within_limit
    assert effect(outage_calls=480).within_limit  # exactly 1.2x
    assert not effect(outage_calls=481).within_limit
    assert effect(no_retry_load=0, outage_calls=0).ratio == 0.0


def test_json_shape() -> None:
    document = effect().as_dict()
    assert list(document) == BUDGET_KEYS
    assert document["outage_load_ratio"] == 0.062
    assert document["within_limit"] is True
    assert json.loads(json.dumps(document)) == document


def test_the_document_carries_it_only_when_measured() -> None:
    side = summarize([Outcome("ok", 0.01)], retries=0, upstream_calls_during_outage=1)
    bare = DemoResult(plain=side, resilient=side, transitions=())
    assert "retry_budget" not in bare.document()
    measured = DemoResult(plain=side, resilient=side, transitions=(), budget=effect())
    document = measured.document()
    assert list(document) == ["plain", "resilient", "breaker_transitions", "retry_budget"]
    assert document["retry_budget"] == effect().as_dict()


@pytest.mark.parametrize(("requests", "expected"), [(2000, 400), (300, 60), (7, 1)])
def test_no_retry_load_is_the_requests_due_during_the_outage(requests: int, expected: int) -> None:
    outage = FaultSchedule.outage(20.0).phase("outage")
    assert (outage.start, outage.end) == (12.0, 16.0)
    assert due_between(arrival_offsets(requests, 20.0), outage.start, outage.end) == expected


def test_due_between_is_half_open() -> None:
    assert due_between([0.0, 1.0, 2.0, 3.0], 1.0, 3.0) == 2


async def test_the_upstream_counts_retries_by_their_attempt_header() -> None:
    clock = FakeClock(100.0)
    upstream = FaultUpstream(FaultSchedule.outage(20.0), clock=clock)
    upstream.start(100.0)
    clock.advance(1.0)  # healthy
    transport = httpx.ASGITransport(app=upstream)
    async with httpx.AsyncClient(transport=transport, base_url="http://upstream") as client:
        await client.get("/r/1")  # a plain client: no header
        await client.get("/r/2", headers={"Stalwart-Attempt": "1"})
        await client.get("/r/2", headers={"Stalwart-Attempt": "2"})
        await client.get("/r/2", headers={"Stalwart-Attempt": "3"})
    assert upstream.calls_during("healthy") == 4
    assert upstream.retries_during("healthy") == 2
    assert upstream.retries_during("outage") == 0


def test_the_watch_builds_the_default_budget_and_counts_refusals_per_phase() -> None:
    clock = FakeClock(50.0)
    watch = BudgetWatch(FaultSchedule.outage(20.0), clock, origin=50.0)
    budget = watch.build("http:http://127.0.0.1:1", clock)
    assert isinstance(budget, RatioRetryBudget)
    assert (budget.percent, budget.ttl) == (20.0, 10.0)  # the transport's default
    clock.advance(4.5)
    watch(RetryBudgetExhausted(budget.name, 1))
    clock.advance(8.0)
    watch(RetryBudgetExhausted(budget.name, 2))
    watch(RetryBudgetExhausted("someone else's budget", 1))
    assert watch.refused == {"blip": 1, "outage": 1}


def test_the_watch_sums_what_its_budgets_granted_and_refused() -> None:
    clock = FakeClock()
    watch = BudgetWatch(
        FaultSchedule.outage(20.0), clock, factory=lambda name, _: RetryBudget(name, max_tokens=4, token_ratio=1.0)
    )
    budget = watch.build("origin", clock)
    assert budget.try_acquire_retry()
    budget.record_failure(True)
    budget.record_failure(True)
    assert not budget.try_acquire_retry()
    assert (watch.granted(), watch.refusals()) == (1, 1)
