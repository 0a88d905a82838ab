"""The decorators' inlined budget success path (``_budget.inline_kind``) against the methods it replaces.

test_retry_budget.py pins the inlined paths on fixed schedules; here the clock moves by arbitrary steps (slice
boundaries, the 0.1 s drain, whole windows, gaps past ``ttl``), and the token bucket's ``_refill`` flag is checked
to survive threads racing failures and successes (a flag left false on a bucket that is not full would stop the
inlined path from ever refilling it).
"""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart import Backoff, Retry, RetryBudget
from stalwart._budget import INLINE_RATIO, INLINE_TOKEN_BUCKET, inline_kind
from stalwart.testing import FakeClock

STEPS = st.sampled_from([0.0, 0.01, 0.05, 0.099, 0.1, 0.101, 0.35, 0.999, 1.0, 2.5, 9.99, 10.0, 30.0])
OPS = st.lists(st.one_of(st.sampled_from(["call", "call", "call", "retry", "stats"]), STEPS), max_size=150)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, ttl=st.sampled_from([1.0, 10.0]), percent=st.sampled_from([10.0, 50.0, 100.0]))
def test_decorated_ratio_deposits_match_record_success_at_any_time(
    ops: list[object], ttl: float, percent: float
) -> None:
    # Two identical budgets on two clocks moved alike: one fed by a decorated function (the inlined deposit, dated
    # with the decorator's clock reading), the other by record_success(True). Every withdrawal and snapshot agrees.
    inline_clock, method_clock = FakeClock(), FakeClock()
    inline = RetryBudget.ratio(percent=percent, ttl=ttl, min_per_second=1, clock=inline_clock)
    method = RetryBudget.ratio(percent=percent, ttl=ttl, min_per_second=1, clock=method_clock)
    assert inline_kind(inline, inline_clock.monotonic) == INLINE_RATIO

    @Retry(on=OSError, backoff=Backoff.constant(0), budget=inline, clock=inline_clock)
    def call() -> None:
        return None

    for op in ops:
        if op == "call":
            call()
            method.record_success(True)
        elif op == "retry":
            assert inline.try_acquire_retry() is method.try_acquire_retry()
        elif op == "stats":
            assert inline.statistics() == method.statistics()
        else:
            assert isinstance(op, float)
            inline_clock.advance(op)
            method_clock.advance(op)
    assert inline.statistics() == method.statistics()


def test_a_token_bucket_raced_by_threads_still_refills_through_the_inlined_path() -> None:
    budget = RetryBudget(max_tokens=50, token_ratio=0.5)
    assert inline_kind(budget, FakeClock().monotonic) == INLINE_TOKEN_BUCKET
    barrier = threading.Barrier(6)

    def worker(i: int) -> None:
        barrier.wait()
        for k in range(3000):
            if (k + i) % 4 == 0:
                budget.record_failure(True)
            else:
                budget.record_success(True)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    budget.record_failure(True)  # whatever the race left, the bucket is now short of at least one token
    short = 50.0 - budget.statistics().balance
    assert short >= 1.0

    @Retry(on=OSError, budget=budget, clock=FakeClock())
    def call() -> None:
        return None

    for _ in range(int(short / 0.5) + 1):  # enough successes to refill it, if each one is recorded
        call()
    assert budget.statistics().balance == 50.0
    assert budget._refill is False  # full again: the healthy path records nothing
    budget.record_failure(True)
    call()
    assert budget.statistics().balance == 49.5  # not full: the inlined path saw it and refilled
