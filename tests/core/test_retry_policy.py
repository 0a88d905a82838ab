"""Table and property tests of the pure retry decision (stalwart._retry_policy)."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart import Backoff, Jitter
from stalwart._retry_policy import RetryBudgetHook, RetryDecision, RetryRules, give_up_note, valid_retry_after

NO_JITTER = Backoff.exponential(jitter=Jitter.NONE)  # 1, 2, 4, 8, ... 60


def decide(rules: RetryRules, **kw: object) -> RetryDecision:
    args: dict[str, object] = {
        "attempt": 1,
        "elapsed": 0.0,
        "deadline_remaining": None,
        "previous_delay": 0.0,
        "rng": lambda: 0.5,
    }
    args.update(kw)
    return rules.decide(**args)  # type: ignore[arg-type]


RULES = RetryRules(max_attempts=5, backoff=NO_JITTER, max_elapsed=10.0, max_retry_after=30.0)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        # retry with the computed backoff, n = attempt - 1
        ({"attempt": 1}, RetryDecision(True, 1.0, "backoff", 1.0)),
        ({"attempt": 2, "previous_delay": 1.0}, RetryDecision(True, 2.0, "backoff", 2.0)),
        ({"attempt": 3, "elapsed": 3.0}, RetryDecision(True, 4.0, "backoff", 4.0)),
        # the outcome is not retryable: nothing else matters
        ({"retryable": False, "attempt": 99}, RetryDecision(False, 0.0, "not_retryable", 0.0)),
        # max_attempts counts the first attempt
        ({"attempt": 5}, RetryDecision(False, 0.0, "max_attempts", 0.0)),
        ({"attempt": 4, "elapsed": 1.0}, RetryDecision(True, 8.0, "backoff", 8.0)),
        # max_elapsed: the next attempt would start at or after it
        ({"attempt": 4, "elapsed": 2.0}, RetryDecision(False, 0.0, "max_elapsed", 8.0)),
        ({"attempt": 1, "elapsed": 8.999}, RetryDecision(True, 1.0, "backoff", 1.0)),
        ({"attempt": 1, "elapsed": 9.0}, RetryDecision(False, 0.0, "max_elapsed", 1.0)),
        # ambient deadline: never sleep into it
        ({"attempt": 2, "deadline_remaining": 2.5}, RetryDecision(True, 2.0, "backoff", 2.0)),
        ({"attempt": 2, "deadline_remaining": 2.0}, RetryDecision(False, 0.0, "deadline", 2.0)),
        ({"attempt": 1, "deadline_remaining": 0.0}, RetryDecision(False, 0.0, "deadline", 1.0)),
        # server pushback: used as is, does not advance the schedule
        ({"attempt": 2, "previous_delay": 1.0, "retry_after": 7.0}, RetryDecision(True, 7.0, "retry_after", 1.0)),
        ({"attempt": 1, "retry_after": 0}, RetryDecision(True, 0.0, "retry_after", 0.0)),
        ({"attempt": 1, "retry_after": 9.99}, RetryDecision(True, 9.99, "retry_after", 0.0)),
        ({"attempt": 1, "retry_after": 30.5}, RetryDecision(False, 0.0, "retry_after_too_long", 0.0)),
        ({"attempt": 1, "retry_after": 5.0, "deadline_remaining": 4.0}, RetryDecision(False, 0.0, "deadline", 0.0)),
        ({"attempt": 1, "retry_after": 9.5, "elapsed": 0.5}, RetryDecision(False, 0.0, "max_elapsed", 0.0)),
        # invalid pushback is ignored: computed backoff
        ({"attempt": 1, "retry_after": -3.0}, RetryDecision(True, 1.0, "backoff", 1.0)),
        ({"attempt": 1, "retry_after": math.nan}, RetryDecision(True, 1.0, "backoff", 1.0)),
        ({"attempt": 1, "retry_after": "5"}, RetryDecision(True, 1.0, "backoff", 1.0)),
        ({"attempt": 1, "retry_after": True}, RetryDecision(True, 1.0, "backoff", 1.0)),
        # a request to wait forever is longer than any cap (tests/regressions/test_retry_after_overflow.py)
        ({"attempt": 1, "retry_after": math.inf}, RetryDecision(False, 0.0, "retry_after_too_long", 0.0)),
        ({"attempt": 1, "retry_after": 10**400}, RetryDecision(False, 0.0, "retry_after_too_long", 0.0)),
    ],
)
def test_decision_table(kw: dict[str, object], expected: RetryDecision) -> None:
    assert decide(RULES, **kw) == expected


def test_retry_after_equal_to_the_cap_is_honoured() -> None:
    rules = RetryRules(max_retry_after=30.0)
    assert decide(rules, retry_after=30.0) == RetryDecision(True, 30.0, "retry_after", 0.0)
    assert decide(rules, retry_after=30.000001).reason == "retry_after_too_long"


def test_checks_order_attempts_before_pushback_before_time() -> None:
    # Out of attempts wins over a too-long Retry-After and an expired deadline.
    assert decide(RULES, attempt=5, retry_after=1000.0, deadline_remaining=0.0).reason == "max_attempts"
    # A too-long Retry-After wins over the deadline.
    assert decide(RULES, attempt=1, retry_after=1000.0, deadline_remaining=0.0).reason == "retry_after_too_long"
    # max_elapsed is checked before the deadline.
    assert decide(RULES, attempt=1, elapsed=50.0, deadline_remaining=0.0).reason == "max_elapsed"


def test_min_attempt_time_reserves_time_for_the_attempt() -> None:
    rules = RetryRules(backoff=NO_JITTER, min_attempt_time=0.5)
    assert decide(rules, attempt=1, deadline_remaining=1.6).retry
    assert decide(rules, attempt=1, deadline_remaining=1.5).reason == "deadline"


def test_max_retry_after_infinite_honours_any_request() -> None:
    rules = RetryRules(max_retry_after=math.inf)
    assert decide(rules, retry_after=1e9) == RetryDecision(True, 1e9, "retry_after", 0.0)


def test_defaults_are_pinned() -> None:
    rules = RetryRules()
    assert rules.max_attempts == 3
    assert rules.backoff == Backoff.exponential()
    assert rules.max_elapsed is None
    assert rules.max_retry_after == 60.0
    assert rules.min_attempt_time == 0.0


def test_timedelta_is_normalised() -> None:
    rules = RetryRules(max_elapsed=timedelta(seconds=3), max_retry_after=timedelta(minutes=2))  # type: ignore[arg-type]
    assert (rules.max_elapsed, rules.max_retry_after) == (3.0, 120.0)


@pytest.mark.parametrize(
    ("kw", "parameter", "error"),
    [
        ({"max_attempts": 0}, "max_attempts", ValueError),
        ({"max_attempts": 2.0}, "max_attempts", TypeError),
        ({"max_attempts": True}, "max_attempts", TypeError),
        ({"backoff": 1.0}, "backoff", TypeError),
        ({"max_elapsed": 0.0}, "max_elapsed", ValueError),
        ({"max_elapsed": -1.0}, "max_elapsed", ValueError),
        ({"max_elapsed": math.nan}, "max_elapsed", ValueError),
        ({"max_retry_after": -1.0}, "max_retry_after", ValueError),
        ({"max_retry_after": math.nan}, "max_retry_after", ValueError),
        ({"min_attempt_time": -0.1}, "min_attempt_time", ValueError),
    ],
)
def test_invalid_rules(kw: dict[str, object], parameter: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=parameter):
        RetryRules(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1.5, 1.5),
        (120, 120.0),
        (-1, None),
        (math.nan, None),
        (math.inf, math.inf),
        (-math.inf, None),
        (True, None),
        ("3", None),
        (None, None),
        (10**400, math.inf),
    ],
)
def test_valid_retry_after(value: object, expected: float | None) -> None:
    assert valid_retry_after(value) == expected


def test_give_up_note_text() -> None:
    assert give_up_note("payments", 3, 3.0123, "max_attempts") == (
        "stalwart: 'payments' gave up after 3 attempts over 3.012s (no attempts left)"
    )
    assert "1 attempt over" in give_up_note("x", 1, 0.0, "deadline")


def test_budget_protocol_is_runtime_checkable() -> None:
    class Budget:
        name = "b"

        def record_success(self, first: bool) -> None: ...

        def record_failure(self, first: bool) -> None: ...

        def try_acquire_retry(self) -> bool:
            return True

    assert isinstance(Budget(), RetryBudgetHook)
    assert not isinstance(object(), RetryBudgetHook)


# ------------------------------------------------------------------ properties

rules_strategy = st.builds(
    RetryRules,
    max_attempts=st.integers(1, 20),
    backoff=st.sampled_from([Backoff.exponential(), NO_JITTER, Backoff.constant(0.5), Backoff.linear()]),
    max_elapsed=st.none() | st.floats(0.01, 1000.0),
    max_retry_after=st.floats(0.0, 1000.0) | st.just(math.inf),
    min_attempt_time=st.floats(0.0, 5.0),
)


@given(
    rules_strategy,
    st.integers(1, 30),
    st.floats(0.0, 1e4),
    st.none() | st.floats(0.0, 1e4),
    st.floats(0.0, 100.0),
    st.none() | st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.integers(),
)
def test_decision_never_crosses_a_limit(
    rules: RetryRules,
    attempt: int,
    elapsed: float,
    remaining: float | None,
    previous: float,
    retry_after: float | None,
    retryable: bool,
    seed: int,
) -> None:
    d = rules.decide(
        attempt=attempt,
        elapsed=elapsed,
        deadline_remaining=remaining,
        previous_delay=previous,
        rng=random.Random(seed).random,
        retry_after=retry_after,
        retryable=retryable,
    )
    assert math.isfinite(d.delay)
    assert d.delay >= 0.0
    if not d.retry:
        assert d.delay == 0.0
        return
    assert retryable
    assert attempt < rules.max_attempts
    assert d.delay <= max(rules.backoff.max_delay, rules.max_retry_after)
    if rules.max_elapsed is not None:
        assert elapsed + d.delay < rules.max_elapsed
    if remaining is not None:
        assert d.delay + rules.min_attempt_time < remaining
    if d.reason == "retry_after":
        assert d.delay == retry_after
        assert d.backoff_delay == previous  # pushback does not advance the schedule
    else:
        assert d.reason == "backoff"
        assert d.delay == d.backoff_delay
