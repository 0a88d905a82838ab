"""Table tests of the pure state machine's rate models: count and time windows, slow calls, half-open judging."""

from __future__ import annotations

import pytest

from stalwart._breaker_state import BreakerMachine, BreakerSettings, CircuitState
from stalwart._windows import CountWindow, TimeWindow

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def machine(**settings: object) -> BreakerMachine:
    settings.setdefault("window", CountWindow(10))
    settings.setdefault("minimum_calls", 10)
    return BreakerMachine(BreakerSettings(**settings), now=0.0)  # type: ignore[arg-type]


def call(m: BreakerMachine, outcome: str, now: float = 0.0, duration: float = 0.0) -> None:
    """One call: ``s`` success, ``f`` failure, ``r`` released; via the fast path for a plain success."""
    permit = m.acquire(now)
    assert permit is not None, f"refused in {m.state}"
    if outcome == "s" and duration == 0.0 and permit == m.window_epoch:
        m.window_success(permit, now)
    elif outcome == "s":
        m.success(permit, now, duration)
    elif outcome == "f":
        m.failure(permit, now, duration)
    else:
        m.release(permit)


def script(m: BreakerMachine, outcomes: str, now: float = 0.0) -> None:
    for outcome in outcomes:
        call(m, outcome, now)


@pytest.mark.parametrize(
    ("threshold", "outcomes", "final"),
    [
        (50.0, "fffff" + "ssss", CLOSED),  # 9 calls: fewer than minimum_calls, whatever the rate
        (50.0, "fffff" + "sssss", OPEN),  # the 10th call is a success, yet 5/10 = 50% >= 50%
        (50.0, "ffff" + "ssssss", CLOSED),  # 40%
        (50.0, "ssssssssss" + "ffff", CLOSED),  # the window holds the last 10: 4/10
        (50.0, "ssssssssss" + "fffff", OPEN),  # 5/10 = 50%: opens (>= threshold)
        (100.0, "fffffffff" + "s", CLOSED),
        (100.0, "ffffffffff", OPEN),
        (10.0, "sssssssss" + "f", OPEN),
        (50.0, "rrrrrrrrrr" + "fffff" + "ssss", CLOSED),  # released permits are not calls
    ],
)
def test_count_window_failure_rate(threshold: float, outcomes: str, final: CircuitState) -> None:
    m = machine(failure_rate_threshold=threshold)
    script(m, outcomes)
    assert m.state is final


def test_count_window_opens_at_the_failure_that_reaches_the_threshold() -> None:
    m = machine()
    script(m, "sssssssss")
    call(m, "f")  # 1/10
    assert m.state is CLOSED
    script(m, "ffff")  # the window is now 5 successes and 5 failures
    assert m.state is OPEN
    assert m.take_changes() == [(CLOSED, OPEN, 0.0, "failure_rate", 50.0)]


def test_count_window_smaller_than_minimum_calls_judges_when_full() -> None:
    m = machine(window=CountWindow(4), minimum_calls=100)
    script(m, "fff")
    assert m.state is CLOSED
    call(m, "s")  # 3/4 with a full window
    assert m.state is OPEN


def test_consecutive_failures_do_not_matter_in_a_rate_model() -> None:
    m = machine(failure_threshold=1)
    script(m, "fs" * 4)
    assert m.state is CLOSED


def test_time_window_forgets_old_failures() -> None:
    m = machine(window=TimeWindow(10), minimum_calls=4)
    script(m, "fff", now=0.0)
    assert m.state is CLOSED  # 3 calls < minimum
    call(m, "s", now=10.0)  # the failures of second 0 left the window [1, 10]
    assert m.state is CLOSED
    assert m.counts(10.0) == (1, 0, 0)
    script(m, "fff", now=10.5)
    assert m.state is OPEN  # 3/4 in the window


@pytest.mark.parametrize("duration", [0.0, 0.5])  # the hot path, and the general one
def test_time_window_success_after_successes_leave_the_window_can_open(duration: float) -> None:
    m = machine(window=TimeWindow(2), minimum_calls=2, failure_rate_threshold=60.0)
    script(m, "ss", now=0.0)
    script(m, "ff", now=1.0)  # 2/4 = 50%
    assert m.state is CLOSED
    call(m, "s", now=2.0, duration=duration)  # second 0 leaves: 2 failures + 1 success = 66.7%
    assert m.state is OPEN


@pytest.mark.parametrize("duration", [0.0, 0.5])
def test_the_success_that_completes_minimum_calls_can_open(duration: float) -> None:
    m = machine(window=CountWindow(10), minimum_calls=4)
    script(m, "fff")
    call(m, "s", duration=duration)  # 3/4
    assert m.state is OPEN


def test_statistics_advance_applies_the_rules_like_a_call() -> None:
    m = machine(window=TimeWindow(2), minimum_calls=2, failure_rate_threshold=60.0)
    script(m, "ss", now=0.0)
    script(m, "ff", now=1.0)
    assert m.counts(1.5) == (4, 2, 0)
    m.counts(2.5)  # second 0 left: 2/2 failed
    assert m.state is OPEN
    assert m.take_changes() == [(CLOSED, OPEN, 2.5, "failure_rate", 100.0)]


# --- slow calls ----------------------------------------------------------------------------------------------------


def test_slow_successes_count_in_the_slow_call_rate() -> None:
    m = machine(slow_call_duration=1.0, slow_call_rate_threshold=50.0)
    for _ in range(5):
        call(m, "s", duration=0.5)
    for _ in range(4):
        call(m, "s", duration=1.0)  # 1.0 s is slow (>= slow_call_duration)
    assert m.state is CLOSED
    call(m, "s", duration=3.0)  # 5/10 slow
    assert m.state is OPEN
    assert m.take_changes() == [(CLOSED, OPEN, 0.0, "slow_call_rate", 50.0)]


def test_a_slow_failure_counts_as_failed_and_slow() -> None:
    m = machine(slow_call_duration=1.0, minimum_calls=2)
    call(m, "f", duration=2.0)
    call(m, "s")
    assert m.counts(0.0) == (2, 1, 1)
    assert m.rates(0.0) == (50.0, 50.0)


def test_calls_in_progress_count_as_slow_before_they_end() -> None:
    m = machine(window=TimeWindow(60), minimum_calls=4, slow_call_duration=5.0, slow_call_rate_threshold=60.0)
    hung = [m.acquire(0.0) for _ in range(2)]
    assert all(p is not None and p < -1 for p in hung)  # tracked tickets
    script(m, "ss", now=1.0)
    assert m.counts(4.9) == (2, 0, 0)
    call(m, "s", now=5.0)  # the acquire at 5.0 finds two calls running for 5 s: 2 slow of 4 (50% < 60%), then 5
    assert m.state is CLOSED
    assert m.counts(5.0) == (5, 0, 2)
    permit = m.acquire(6.0)
    assert permit is not None
    m.failure(permit, 6.0, 0.1)  # 2 slow of 6 calls: 33%
    assert m.state is CLOSED
    m2 = machine(window=TimeWindow(60), minimum_calls=4, slow_call_duration=5.0, slow_call_rate_threshold=50.0)
    hung2 = [m2.acquire(0.0) for _ in range(3)]
    script(m2, "s", now=1.0)
    assert m2.acquire(5.0) is None  # 3 overdue of 4: the breaker opens before any of them ends
    assert m2.state is OPEN
    assert m2.take_changes() == [(CLOSED, OPEN, 5.0, "slow_call_rate", 75.0)]
    m2.success(hung2[0], 6.0, 6.0)  # type: ignore[arg-type]  # stale now
    assert m2.state is OPEN


def test_an_overdue_call_that_ends_is_recorded_once_as_slow() -> None:
    m = machine(window=CountWindow(10), minimum_calls=10, slow_call_duration=1.0)
    permit = m.acquire(0.0)
    assert permit is not None
    m.acquire(2.0)  # promotes the first call to overdue
    assert m.counts(2.0) == (1, 0, 1)
    m.success(permit, 2.0, 0.0)  # the duration passed is ignored: it was overdue
    assert m.counts(2.0) == (1, 0, 1)
    m.success(permit, 2.0, 0.0)  # a second report of the same ticket is ignored
    assert m.counts(2.0) == (1, 0, 1)


def test_released_tickets_are_forgotten() -> None:
    m = machine(slow_call_duration=1.0)
    permit = m.acquire(0.0)
    assert permit is not None
    m.release(permit)
    m.acquire(5.0)
    assert m.counts(5.0) == (0, 0, 0)


def test_slow_call_duration_needs_a_window() -> None:
    with pytest.raises(ValueError, match="slow_call_duration"):
        BreakerSettings(slow_call_duration=1.0)


# --- half-open judging ---------------------------------------------------------------------------------------------


def half_open(**settings: object) -> BreakerMachine:
    settings.setdefault("half_open_max_calls", 4)
    m = machine(reset_timeout=1.0, **settings)
    m.transition_to(OPEN, 0.0)
    m.take_changes()
    return m


@pytest.mark.parametrize(
    ("threshold", "outcomes", "final"),
    [
        (50.0, "ss", HALF_OPEN),  # 2 more failures would make 50%: not certain yet
        (50.0, "sss", CLOSED),  # at most 1 failure of 4 = 25%: certain
        (50.0, "ff", OPEN),  # 2 of 4 = 50% whatever comes next
        (50.0, "f", HALF_OPEN),
        (50.0, "fss", HALF_OPEN),
        (50.0, "fsss", CLOSED),  # all 4 in: 25%
        (25.0, "f", OPEN),
        (100.0, "fff", HALF_OPEN),
        (100.0, "ffff", OPEN),
        (100.0, "s", CLOSED),
        (50.0, "rrrrsss", CLOSED),  # released probes return their permits
    ],
)
def test_rate_model_probes_decide_as_soon_as_certain(threshold: float, outcomes: str, final: CircuitState) -> None:
    m = half_open(failure_rate_threshold=threshold)
    for outcome in outcomes:
        call(m, outcome, now=1.0)
    assert m.state is final


def test_rate_model_probes_judge_slowness() -> None:
    m = half_open(slow_call_duration=1.0, slow_call_rate_threshold=50.0)
    permits = [m.acquire(1.0) for _ in range(4)]
    assert permits.count(None) == 0
    m.success(permits[0], 1.0, 2.0)  # type: ignore[arg-type]
    m.success(permits[1], 1.0, 2.0)  # type: ignore[arg-type]
    assert m.state is OPEN
    assert m.take_changes() == [
        (OPEN, HALF_OPEN, 1.0, "reset_timeout", None),
        (HALF_OPEN, OPEN, 1.0, "slow_call_rate", 50.0),
    ]


def test_half_open_statistics_are_the_probes() -> None:
    m = half_open()
    call(m, "s", now=1.0)
    call(m, "f", now=1.0)
    assert m.counts(1.0) == (2, 1, 0)
    assert m.rates(1.0) == (50.0, None)


# --- windows across transitions ------------------------------------------------------------------------------------


def test_window_is_kept_while_open_and_cleared_on_close() -> None:
    m = machine(reset_timeout=5.0, half_open_max_calls=1, success_threshold=1)
    script(m, "ffffffssss")
    assert m.state is OPEN
    assert m.counts(1.0) == (10, 6, 0)  # what opened the breaker
    assert m.rates(1.0) == (60.0, None)
    call(m, "s", now=5.0)
    assert m.state is CLOSED
    assert m.counts(5.0) == (0, 0, 0)
    assert m.rates(5.0) == (None, None)  # too few calls to judge


def test_metrics_only_records_rates_and_never_trips() -> None:
    m = machine()
    m.transition_to(CircuitState.METRICS_ONLY, 0.0)
    script(m, "f" * 20)
    assert m.state is CircuitState.METRICS_ONLY
    assert m.rates(0.0) == (100.0, None)


def test_disabled_records_nothing_in_the_window() -> None:
    m = machine()
    m.transition_to(CircuitState.DISABLED, 0.0)
    script(m, "f" * 20)
    assert m.state is CircuitState.DISABLED
    assert m.rates(0.0) == (None, None)
    assert m.window is not None
    assert m.window.calls == 0


def test_stale_results_never_enter_the_window() -> None:
    m = machine(reset_timeout=5.0, half_open_max_calls=1, success_threshold=1)
    old = m.acquire(0.0)
    script(m, "f" * 10)
    assert m.state is OPEN
    call(m, "s", now=5.0)
    assert m.state is CLOSED
    assert old is not None
    m.failure(old, 5.0)
    m.window_success(old, 5.0)
    assert m.counts(5.0) == (0, 0, 0)


@pytest.mark.parametrize(
    ("settings", "error", "parameter"),
    [
        ({"failure_rate_threshold": 0.0}, ValueError, "failure_rate_threshold"),
        ({"failure_rate_threshold": 101.0}, ValueError, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": -1.0}, ValueError, "slow_call_rate_threshold"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls"),
        ({"slow_call_duration": 0.0}, ValueError, "slow_call_duration"),
        ({"window": 10}, TypeError, "window"),
    ],
)
def test_invalid_rate_settings(settings: dict[str, object], error: type[Exception], parameter: str) -> None:
    settings.setdefault("window", CountWindow(10))
    with pytest.raises(error, match=parameter):
        BreakerSettings(**settings)  # type: ignore[arg-type]
