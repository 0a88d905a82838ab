"""Retry budgets: gRPC token bucket and Finagle ratio, alone, under concurrency, and wired into Retry."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart import (
    Backoff,
    Event,
    RatioRetryBudget,
    Retry,
    RetryBudget,
    RetryBudgetExhausted,
    RetryBudgetStatistics,
    RetryGaveUp,
    add_hook,
    remove_hook,
)
from stalwart._retry_policy import RetryBudgetHook
from stalwart.testing import FakeClock


class Transient(OSError):
    pass


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    hook = seen.append
    add_hook(hook)
    yield seen
    remove_hook(hook)


# ------------------------------------------------------------------ gRPC token bucket


def test_token_bucket_defaults_and_protocol() -> None:
    budget = RetryBudget()
    assert (budget.name, budget.max_tokens, budget.token_ratio) == ("retry-budget", 10.0, 0.1)
    assert isinstance(budget, RetryBudgetHook)
    assert budget.statistics() == RetryBudgetStatistics("retry-budget", "token_bucket", 10.0, True, 0, 0)


@pytest.mark.parametrize(
    ("failures", "allowed"),
    [(0, True), (1, True), (4, True), (5, False), (6, False), (10, False), (50, False)],
)
def test_token_bucket_allows_retries_only_above_half(failures: int, allowed: bool) -> None:
    # gRFC A6: a failure costs 1 token; retries only while tokens > max_tokens / 2.
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    for _ in range(failures):
        budget.record_failure(True)
    assert budget.statistics().balance == max(0.0, 10.0 - failures)
    assert budget.try_acquire_retry() is allowed


def test_token_bucket_successes_refill_up_to_the_maximum() -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    for _ in range(20):
        budget.record_failure(False)
    assert budget.statistics().balance == 0.0  # never below zero
    for _ in range(10):
        budget.record_success(False)
    assert budget.statistics().balance == 5.0
    assert not budget.try_acquire_retry()  # exactly half is not above half
    budget.record_success(True)
    assert budget.try_acquire_retry()
    for _ in range(100):
        budget.record_success(True)
    assert budget.statistics().balance == 10.0
    stats = budget.statistics()
    assert (stats.granted, stats.refused) == (1, 1)


@pytest.mark.parametrize(
    ("kw", "parameter", "error"),
    [
        ({"max_tokens": 0}, "max_tokens", ValueError),
        ({"max_tokens": -1}, "max_tokens", ValueError),
        ({"max_tokens": math.inf}, "max_tokens", ValueError),
        ({"max_tokens": math.nan}, "max_tokens", ValueError),
        ({"max_tokens": "10"}, "max_tokens", TypeError),
        ({"token_ratio": 0}, "token_ratio", ValueError),
        ({"token_ratio": True}, "token_ratio", TypeError),
        ({"name": ""}, "name", TypeError),
    ],
)
def test_token_bucket_invalid(kw: dict[str, Any], parameter: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=parameter):
        RetryBudget(**kw)


def test_token_bucket_concurrent_threads_keep_tokens_in_bounds() -> None:
    budget = RetryBudget(max_tokens=100, token_ratio=0.25)
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        for k in range(2000):
            if (k + i) % 3:
                budget.record_failure(k == 0)
            else:
                budget.record_success(k == 0)
            budget.try_acquire_retry()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = budget.statistics()
    assert 0.0 <= stats.balance <= 100.0
    assert stats.granted + stats.refused == 8 * 2000


# ------------------------------------------------------------------ Finagle ratio


def test_ratio_defaults() -> None:
    budget = RetryBudget.ratio(clock=FakeClock())
    assert isinstance(budget, RatioRetryBudget)
    assert isinstance(budget, RetryBudget)
    assert (budget.percent, budget.ttl) == (20.0, 10.0)
    # The reserve alone: min_per_second * ttl = 100 retries per window.
    assert budget.statistics() == RetryBudgetStatistics("retry-budget", "ratio", 100, True, 0, 0)


@pytest.mark.parametrize(("percent", "calls", "retries"), [(20.0, 10, 2), (20.0, 100, 20), (50.0, 7, 3), (100.0, 4, 4)])
def test_ratio_allows_percent_of_calls(percent: float, calls: int, retries: int) -> None:
    budget = RetryBudget.ratio(percent=percent, min_per_second=0, clock=FakeClock())
    for _ in range(calls):
        budget.record_success(True)
    granted = sum(budget.try_acquire_retry() for _ in range(calls * 2))
    assert granted == retries


def test_ratio_counts_calls_not_attempts() -> None:
    budget = RetryBudget.ratio(percent=50.0, min_per_second=0, clock=FakeClock())
    for _ in range(10):
        budget.record_success(False)  # a retry's outcome earns nothing
        budget.record_failure(False)
    assert not budget.try_acquire_retry()
    budget.record_failure(True)  # a call whose first attempt failed deposits like any call
    budget.record_success(True)
    assert budget.try_acquire_retry()
    assert not budget.try_acquire_retry()


def test_ratio_deposits_and_withdrawals_expire_after_ttl() -> None:
    clock = FakeClock()
    budget = RetryBudget.ratio(percent=20.0, ttl=10.0, min_per_second=0, clock=clock)
    for _ in range(10):
        budget.record_success(True)
    clock.advance(5.0)
    assert budget.statistics().balance == 2
    clock.advance(5.0)  # the deposits made at t=0 are now ttl old
    assert budget.statistics().balance == 0
    assert not budget.try_acquire_retry()


def test_ratio_reserve_refills_when_withdrawals_expire() -> None:
    clock = FakeClock()
    budget = RetryBudget.ratio(percent=20.0, ttl=2.0, min_per_second=1, clock=clock)  # reserve: 2 per 2 s
    assert [budget.try_acquire_retry() for _ in range(3)] == [True, True, False]
    clock.advance(1.0)
    assert not budget.try_acquire_retry()
    clock.advance(1.0)
    assert [budget.try_acquire_retry() for _ in range(3)] == [True, True, False]
    clock.advance(1e9)  # far future: no overflow, everything expired
    assert budget.statistics().balance == 2


def test_ratio_window_slides_slice_by_slice() -> None:
    clock = FakeClock()
    budget = RetryBudget.ratio(percent=100.0, ttl=10.0, min_per_second=0, clock=clock)
    for second in range(10):
        budget.record_success(True)
        clock.advance(1.0)
        assert budget.statistics().balance == (second + 1 if second < 9 else 9)
    clock.advance(3.0)
    assert budget.statistics().balance == 6  # deposits made at t=0..3 expired


def test_ratio_deposits_alone_close_slices() -> None:
    # No withdrawal or snapshot in between: the deposits themselves must close each slice, or the deposits of ten
    # seconds would all be credited to the first slice and expire together.
    clock = FakeClock()
    budget = RetryBudget.ratio(percent=100.0, ttl=10.0, min_per_second=0, clock=clock)
    for _ in range(10):
        budget.record_success(True)
        clock.advance(1.0)
    clock.advance(3.0)
    assert budget.statistics().balance == 6


@pytest.mark.parametrize(
    ("kw", "parameter", "error"),
    [
        ({"percent": 0}, "percent", ValueError),
        ({"percent": 101}, "percent", ValueError),
        ({"percent": math.nan}, "percent", ValueError),
        ({"ttl": 0}, "ttl", ValueError),
        ({"ttl": -1}, "ttl", ValueError),
        ({"ttl": math.inf}, "ttl", ValueError),
        ({"min_per_second": -1}, "min_per_second", ValueError),
        ({"min_per_second": 1.5}, "min_per_second", TypeError),
        ({"clock": object()}, "clock", TypeError),
        ({"name": 3}, "name", TypeError),
    ],
)
def test_ratio_invalid(kw: dict[str, Any], parameter: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=parameter):
        RetryBudget.ratio(**kw)


@given(st.lists(st.sampled_from(["deposit", "retry"]), max_size=300), st.sampled_from([10.0, 20.0, 33.0, 100.0]))
def test_ratio_matches_a_reference_model_without_time(ops: list[str], percent: float) -> None:
    budget = RetryBudget.ratio(percent=percent, min_per_second=1, ttl=3.0, clock=FakeClock())
    withdrawal = math.ceil(1000 * 100 / percent)
    balance = 3 * withdrawal  # the reserve
    for op in ops:
        if op == "deposit":
            budget.record_success(True)
            balance += 1000
        else:
            expected = balance >= withdrawal
            assert budget.try_acquire_retry() is expected
            if expected:
                balance -= withdrawal
    assert budget.statistics().balance == balance // withdrawal


def test_ratio_concurrent_threads_never_overspend() -> None:
    budget = RetryBudget.ratio(percent=20.0, min_per_second=0, clock=FakeClock())
    granted = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        mine = 0
        for _ in range(500):
            budget.record_success(True)
            mine += budget.try_acquire_retry()
        granted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(granted)
    assert total <= 8 * 500 // 5  # at most one retry per five calls
    stats = budget.statistics()
    assert stats.granted == total
    assert stats.balance == (8 * 500 * 1000 - total * 5000) // 5000  # every deposit and withdrawal accounted for


# ------------------------------------------------------------------ wired into Retry


def always_failing(counter: list[int]) -> Any:
    def fn() -> None:
        counter.append(1)
        raise Transient

    return fn


def test_retry_stops_when_the_budget_is_spent(events: list[Event]) -> None:
    budget = RetryBudget("db", max_tokens=4, token_ratio=0.5)
    retry = Retry(on=OSError, max_attempts=3, backoff=Backoff.constant(0), budget=budget, clock=FakeClock())
    calls: list[int] = []
    with pytest.raises(Transient) as info:
        retry.call(always_failing(calls))
    # tokens 4 -> 3 (retry allowed: 3 > 2) -> 2 (2 is not above 2: refused)
    assert len(calls) == 2
    assert "retry budget is exhausted" in info.value.__notes__[0]
    assert RetryBudgetExhausted("db", 2) in events
    assert isinstance(events[-1], RetryGaveUp)
    assert events[-1].reason == "budget"


@pytest.mark.parametrize(
    ("budget", "limit"),
    [
        (None, 3.0),
        (RetryBudget(max_tokens=10, token_ratio=0.1), 1.01),
        (RetryBudget.ratio(percent=20.0, min_per_second=0, clock=FakeClock()), 1.2),
        (RetryBudget.ratio(percent=10.0, min_per_second=0, clock=FakeClock()), 1.1),
    ],
)
def test_outage_load_is_bounded_by_the_budget(budget: RetryBudget | None, limit: float) -> None:
    # During a full outage, every call fails: without a budget 3 attempts per call triple the load.
    retry = Retry(on=OSError, max_attempts=3, backoff=Backoff.constant(0), budget=budget, clock=FakeClock())
    calls: list[int] = []
    for _ in range(1000):
        with pytest.raises(Transient):
            retry.call(always_failing(calls))
    assert len(calls) <= 1000 * limit
    if budget is None:
        assert len(calls) == 3000


def test_blip_is_fully_retried_with_a_healthy_budget() -> None:
    budget = RetryBudget.ratio(clock=FakeClock())
    retry = Retry(on=OSError, max_attempts=3, backoff=Backoff.constant(0), budget=budget, clock=FakeClock())
    outcomes = []
    for i in range(200):
        state = {"n": 0}

        def flaky(i: int = i, state: dict[str, int] = state) -> int:
            state["n"] += 1
            if 100 <= i < 110 and state["n"] == 1:  # a short blip: ten calls fail once
                raise Transient
            return i

        outcomes.append(retry.call(flaky))
    assert outcomes == list(range(200))


async def test_async_callers_share_one_budget() -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.1)
    retry = Retry(on=OSError, max_attempts=3, backoff=Backoff.constant(0), budget=budget, clock=FakeClock())
    attempts = 0

    async def down() -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        raise Transient

    results = await asyncio.gather(*(retry.run(down) for _ in range(100)), return_exceptions=True)
    assert all(isinstance(r, Transient) for r in results)
    assert attempts <= 105  # retries stop once five failures have been recorded
    assert budget.statistics().balance == 0.0


# ------------------------------------------------------------------ the decorators' inlined success paths
# The decorator wrappers record a success without a method call where they can (stalwart._budget.inline_kind): a
# full token bucket records nothing, a ratio budget on the wrapper's own clock deposits with the wrapper's clock
# reading. These tests pin that the inlined paths count exactly what record_success would.


class _Wrapped:
    """A sync and an async function decorated by one Retry, each failing once on the calls listed in ``fail``."""

    def __init__(self, retry: Retry, fail: set[int]) -> None:
        self.calls = 0
        self.fail = fail
        self.sync = retry(self._sync)
        self.run = retry(self._async)

    def _sync(self) -> int:
        self.calls += 1
        if self.calls in self.fail:
            raise Transient
        return self.calls

    async def _async(self) -> int:
        return self._sync()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("same_clock", [True, False])
async def test_decorated_ratio_budget_deposits_once_per_call(mode: str, same_clock: bool) -> None:
    clock = FakeClock()
    budget = RetryBudget.ratio(percent=20.0, ttl=10.0, min_per_second=0, clock=clock)
    retry_clock = clock if same_clock else FakeClock()  # another clock: the generic record_success path
    wrapped = _Wrapped(Retry(on=OSError, backoff=Backoff.constant(0), budget=budget, clock=retry_clock), set())
    for _ in range(50):
        assert await _call(wrapped, mode) > 0
        clock.advance(0.05)  # 2.5 s in all: several rolls of the pending deposits, still inside the window
    assert budget.statistics().balance == 10  # 50 calls at 20 %
    clock.advance(10.0)
    assert budget.statistics().balance == 0  # every deposit expired with the window


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_decorated_ratio_budget_counts_calls_not_attempts(mode: str) -> None:
    clock = FakeClock()
    budget = RetryBudget.ratio(percent=100.0, ttl=10.0, min_per_second=0, clock=clock)
    wrapped = _Wrapped(Retry(on=OSError, backoff=Backoff.constant(0), budget=budget, clock=clock), {3})
    for _ in range(4):
        await _call(wrapped, mode)
    # 4 calls, 5 attempts (the third call failed once and was retried, withdrawing one deposit)
    assert wrapped.calls == 5
    assert budget.statistics().balance == 3
    assert budget.statistics().granted == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_decorated_token_bucket_refills_only_when_not_full(mode: str) -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    retry = Retry(on=OSError, max_attempts=4, backoff=Backoff.constant(0), budget=budget, clock=FakeClock())
    wrapped = _Wrapped(retry, {1, 2, 3})
    assert await _call(wrapped, mode) == 4  # three failures, three retries: 10 -> 7 tokens, then the success: 7.5
    assert budget.statistics().balance == 7.5
    for _ in range(4):
        await _call(wrapped, mode)
    assert budget.statistics().balance == 9.5
    for _ in range(3):
        await _call(wrapped, mode)
    assert budget.statistics().balance == 10.0  # capped: a full bucket takes no more
    budget.record_failure(True)
    assert budget.statistics().balance == 9.0
    await _call(wrapped, mode)  # the bucket is no longer full: the inlined path must see it and refill
    assert budget.statistics().balance == 9.5


async def _call(wrapped: _Wrapped, mode: str) -> int:
    return wrapped.sync() if mode == "sync" else await wrapped.run()


def test_ratio_pending_deposits_are_credited_at_least_every_tenth_of_a_second() -> None:
    # Deposits wait in a list until a roll credits them; a deposit rolls once 0.1 s passed since the last roll, so
    # the list holds at most 0.1 s of deposits however long the slices are (here 60 s).
    clock = FakeClock()
    budget = RetryBudget.ratio(percent=100.0, ttl=600.0, min_per_second=0, clock=clock)
    for _ in range(1000):
        budget.record_success(True)
    clock.advance(0.1)
    budget.record_success(True)  # rolls: credits the 1000 waiting deposits, then waits itself
    assert len(budget._pending) == 1
    assert budget.statistics().balance == 1001


def test_decorated_ratio_budget_loses_no_deposit_across_threads() -> None:
    clock = FakeClock()
    budget = RetryBudget.ratio(percent=100.0, ttl=10.0, min_per_second=0, clock=clock)
    retry = Retry(on=OSError, backoff=Backoff.constant(0), budget=budget, clock=clock)
    barrier = threading.Barrier(8)

    @retry
    def ok() -> None:
        return None

    def worker(i: int) -> None:
        barrier.wait()
        for k in range(2000):
            ok()
            if i == 0 and k % 100 == 0:
                clock.advance(0.05)  # rolls while the other threads deposit
                budget.statistics()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.monotonic() < 10.0  # every deposit still inside the window
    assert budget.statistics().balance == 8 * 2000
