"""Regression: the gRPC token bucket let retries through with its count *at* the threshold, after float drift.

What was wrong: ``RetryBudget`` (gRFC A6 retry throttling: a retryable failure costs 1 token, a success returns
``token_ratio``, retries only while the count is *above* ``max_tokens / 2``) added and subtracted binary floats.
Sums of a decimal ratio drift: from 10 tokens, six failures and five successes of ``0.2`` give
``5.000000000000001``, so a retry was granted where the exact count, 5.0, equals the threshold and gRPC refuses
(its C-core and Java implementations count integer thousandths of a token for exactly this reason; A6 gives
``token_ratio`` up to 3 decimals). With ``token_ratio=0.2`` this re-enabled retries one success early after 6, 7,
8, 9 or 10 net failures, and ``statistics().balance`` reported the drifted count. Now the count is kept on a grid
of 10**-9 tokens (correctly rounded at each step), so it is the float nearest the exact decimal count and the
decision matches exact arithmetic for any ratio of up to 9 decimals.
"""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

import stalwart as sw


class ExactBucket:
    """The A6 rules in exact arithmetic: the reference."""

    def __init__(self, max_tokens: str, token_ratio: str) -> None:
        self.max = Fraction(max_tokens)
        self.ratio = Fraction(token_ratio)
        self.tokens = self.max

    def success(self) -> None:
        self.tokens = min(self.max, self.tokens + self.ratio)

    def failure(self) -> None:
        self.tokens = max(Fraction(0), self.tokens - 1)

    def allowed(self) -> bool:
        return self.tokens > self.max / 2


def test_six_failures_and_five_successes_of_0_2_leave_the_count_at_the_threshold() -> None:
    budget = sw.RetryBudget(max_tokens=10, token_ratio=0.2)
    for _ in range(6):
        budget.record_failure(True)
    for _ in range(5):
        budget.record_success(True)
    assert budget.statistics().balance == 5.0
    assert budget.try_acquire_retry() is False
    budget.record_success(True)
    assert budget.try_acquire_retry() is True


@pytest.mark.parametrize(
    ("max_tokens", "ratio"),
    [("10", "0.1"), ("10", "0.2"), ("7", "0.3"), ("100", "0.07"), ("3.5", "0.125"), ("1000", "0.001")],
)
@pytest.mark.parametrize("seed", range(5))
def test_every_decision_matches_exact_arithmetic(max_tokens: str, ratio: str, seed: int) -> None:
    rng = random.Random(seed)
    budget = sw.RetryBudget(max_tokens=float(max_tokens), token_ratio=float(ratio))
    exact = ExactBucket(max_tokens, ratio)
    for step in range(1000):
        if rng.random() < (0.5 if exact.allowed() else 0.02):  # keeps the count around the threshold
            budget.record_failure(True)
            exact.failure()
        else:
            budget.record_success(True)
            exact.success()
        statistics = budget.statistics()
        assert statistics.retries_allowed is exact.allowed(), (step, statistics.balance, exact.tokens)
        assert statistics.balance == float(exact.tokens), (step, statistics.balance, exact.tokens)
