"""Table tests of the pure circuit-breaker state machine (consecutive-failure model)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from stalwart._breaker_state import BreakerMachine, BreakerSettings, CircuitState

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def machine(**settings: object) -> BreakerMachine:
    return BreakerMachine(BreakerSettings(**settings), now=0.0)  # type: ignore[arg-type]


def run(m: BreakerMachine, script: str, now: float = 0.0) -> list[str]:
    """Run a script of steps (``s`` success, ``f`` failure, ``r`` release, each on a fresh permit) and return the
    state after each step."""
    states = []
    for step in script:
        permit = m.acquire(now)
        assert permit is not None, f"refused at step {step!r} in {m.state}"
        {"s": lambda p: m.success(p, now), "f": lambda p: m.failure(p, now), "r": m.release}[step](permit)
        states.append(m.state.value)
    return states


@pytest.mark.parametrize(
    ("threshold", "script", "final"),
    [
        (5, "ffff", CLOSED),
        (5, "fffff", OPEN),
        (5, "ffffsffff", CLOSED),  # a success resets the count: failures must be consecutive
        (5, "ffffsfffff", OPEN),
        (1, "f", OPEN),
        (3, "rrrfff", OPEN),  # a released permit is no outcome
        (3, "ffrrf", OPEN),
    ],
)
def test_closed_counts_consecutive_failures(threshold: int, script: str, final: CircuitState) -> None:
    m = machine(failure_threshold=threshold)
    states = run(m, script[:-1])
    assert all(s == "closed" for s in states)
    run(m, script[-1])
    assert m.state is final


def test_open_rejects_until_reset_timeout_then_first_caller_is_a_counted_probe() -> None:
    m = machine(failure_threshold=1, reset_timeout=30.0, half_open_max_calls=2, success_threshold=2)
    run(m, "f", now=10.0)
    assert m.state is OPEN
    assert m.acquire(10.0) is None
    assert m.retry_after(10.0) == 30.0
    assert m.acquire(39.999) is None
    assert m.retry_after(39.0) == pytest.approx(1.0)
    first = m.acquire(40.0)
    assert first is not None
    assert m.state is HALF_OPEN
    assert m.probes == 1  # the caller that made the transition holds a probe permit (the seed forgot to count it)
    second = m.acquire(40.0)
    assert second is not None
    assert m.acquire(40.0) is None  # both probes taken
    assert m.retry_after(40.0) is None


@pytest.mark.parametrize(
    ("success_threshold", "max_calls", "outcomes", "final"),
    [
        (3, 3, "sss", CLOSED),
        (3, 3, "ssf", OPEN),  # any failing probe re-opens
        (3, 3, "f", OPEN),
        (1, 3, "s", CLOSED),
        (2, 5, "ss", CLOSED),
        (2, 5, "sf", OPEN),
    ],
)
def test_half_open_judges_probes(success_threshold: int, max_calls: int, outcomes: str, final: CircuitState) -> None:
    m = machine(
        failure_threshold=1, reset_timeout=1.0, success_threshold=success_threshold, half_open_max_calls=max_calls
    )
    run(m, "f")
    permits = [m.acquire(5.0) for _ in range(len(outcomes))]
    assert m.state is HALF_OPEN
    for permit, outcome in zip(permits, outcomes, strict=True):
        assert permit is not None
        (m.success if outcome == "s" else m.failure)(permit, 5.0)
    assert m.state is final


def test_half_open_admits_exactly_max_calls_and_released_permits_are_returned() -> None:
    m = machine(failure_threshold=1, reset_timeout=0.0, half_open_max_calls=3)
    run(m, "f")
    permits = [m.acquire(1.0) for _ in range(10)]
    granted = [p for p in permits if p is not None]
    assert len(granted) == 3
    m.release(granted[0])
    assert m.probes == 2
    again = m.acquire(1.0)
    assert again is not None
    assert m.acquire(1.0) is None


def test_stale_permits_never_move_the_machine() -> None:
    m = machine(failure_threshold=2, reset_timeout=10.0, half_open_max_calls=1, success_threshold=1)
    old = [m.acquire(0.0) for _ in range(4)]
    assert all(p is not None for p in old)
    m.failure(old[0], 0.0)  # type: ignore[arg-type]
    m.failure(old[1], 0.0)  # type: ignore[arg-type]
    assert m.state is OPEN
    opened_until = m.open_until
    m.failure(old[2], 5.0)  # type: ignore[arg-type]  # started before the breaker opened: must not extend OPEN
    assert m.open_until == opened_until
    probe = m.acquire(10.0)
    assert probe is not None
    m.success(old[3], 10.0)  # type: ignore[arg-type]  # a CLOSED-era success must not close a HALF_OPEN breaker
    assert m.state is HALF_OPEN
    m.release(old[3])  # type: ignore[arg-type]
    assert m.probes == 1
    m.success(probe, 10.0)
    assert m.state is CLOSED
    m.failure(probe, 10.0)  # a probe's late duplicate is stale now
    assert m.failures == 0


def test_epoch_changes_on_every_transition_and_changes_are_queued() -> None:
    m = machine(failure_threshold=1, reset_timeout=1.0, success_threshold=1, half_open_max_calls=1)
    epochs = [m.epoch]
    run(m, "f", now=0.0)
    epochs.append(m.epoch)
    probe = m.acquire(2.0)
    epochs.append(m.epoch)
    assert probe is not None
    m.success(probe, 2.5)
    epochs.append(m.epoch)
    assert len(set(epochs)) == 4
    assert m.take_changes() == [
        (CLOSED, OPEN, 0.0, "consecutive_failures", None),
        (OPEN, HALF_OPEN, 2.0, "reset_timeout", None),
        (HALF_OPEN, CLOSED, 2.5, "probes_succeeded", None),
    ]


def test_lock_free_fields_follow_the_state() -> None:
    m = machine(failure_threshold=2, reset_timeout=5.0)
    assert m.fast_epoch == m.epoch == m.quiet_epoch
    assert m.reject_until == -math.inf
    run(m, "f")
    assert m.fast_epoch == m.epoch
    assert m.quiet_epoch == -1  # a success must now reset the count
    run(m, "s")
    assert m.quiet_epoch == m.epoch
    run(m, "ff", now=1.0)
    assert (m.fast_epoch, m.quiet_epoch, m.reject_until) == (-1, -1, 6.0)
    m.acquire(6.0)
    assert (m.fast_epoch, m.quiet_epoch, m.reject_until) == (-1, -1, -math.inf)


@pytest.mark.parametrize(
    ("state", "admits", "fast", "quiet"),
    [
        (CircuitState.CLOSED, True, True, True),
        (CircuitState.OPEN, False, False, False),
        (CircuitState.HALF_OPEN, True, False, False),
        (CircuitState.DISABLED, True, True, True),
        (CircuitState.METRICS_ONLY, True, True, True),
        (CircuitState.FORCED_OPEN, False, False, False),
    ],
)
def test_transition_to_each_state(state: CircuitState, admits: bool, fast: bool, quiet: bool) -> None:
    m = machine()
    m.transition_to(state, 1.0)
    assert m.state is state
    assert (m.acquire(1.0) is not None) is admits
    assert (m.fast_epoch == m.epoch) is fast
    assert (m.quiet_epoch == m.epoch) is quiet


def test_disabled_and_metrics_only_never_trip() -> None:
    for state in (CircuitState.DISABLED, CircuitState.METRICS_ONLY):
        m = machine(failure_threshold=1)
        m.transition_to(state, 0.0)
        run(m, "fffff")
        assert m.state is state
        assert m.calls == 5
        assert m.failed == 5


def test_forced_open_has_no_retry_after() -> None:
    m = machine()
    m.transition_to(CircuitState.FORCED_OPEN, 0.0)
    assert m.acquire(1e9) is None
    assert m.retry_after(0.0) is None


def test_max_half_open_wait_reopens_when_probes_hang() -> None:
    m = machine(
        failure_threshold=1, reset_timeout=10.0, half_open_max_calls=1, success_threshold=1, max_half_open_wait=5.0
    )
    run(m, "f", now=0.0)
    hung = m.acquire(10.0)
    assert hung is not None
    assert m.acquire(14.9) is None
    assert m.state is HALF_OPEN
    assert m.acquire(15.0) is None
    assert m.state is OPEN
    assert m.retry_after(15.0) == 10.0
    m.success(hung, 16.0)  # the hung probe finally answers: stale
    assert m.state is OPEN


def test_without_max_half_open_wait_a_hung_probe_waits() -> None:
    m = machine(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=1, success_threshold=1)
    run(m, "f")
    assert m.acquire(1.0) is not None
    assert m.acquire(1e9) is None
    assert m.state is HALF_OPEN


class Doubling:
    """A duck-typed Backoff: the open period doubles from 10 s up to 40 s."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def delay(self, n: int, previous: float, random: object) -> float:
        self.calls.append((n, previous))
        return min(40.0, 10.0 * 2**n)


def test_open_period_backoff_grows_on_repeated_openings_and_resets_on_clean_close() -> None:
    schedule = Doubling()
    m = machine(failure_threshold=1, reset_timeout=schedule, half_open_max_calls=1, success_threshold=1)
    now = 0.0
    periods = []
    for _ in range(3):
        for outcome in "ffs":  # trip from CLOSED, fail the first probe, pass the second
            permit = m.acquire(now)
            assert permit is not None
            if outcome == "f":
                m.failure(permit, now)
                periods.append(m.open_until - now)
                now = m.open_until
            else:
                m.success(permit, now)
        assert m.state is CLOSED
    assert periods == [10.0, 20.0] * 3  # the count of openings restarts after each clean close
    assert schedule.calls[:2] == [(0, 0.0), (1, 10.0)]


def test_open_period_backoff_keeps_growing_up_to_its_cap() -> None:
    m = machine(failure_threshold=1, reset_timeout=Doubling(), half_open_max_calls=1, success_threshold=1)
    now = 0.0
    periods = []
    for _ in range(5):
        permit = m.acquire(now)
        assert permit is not None
        m.failure(permit, now)
        periods.append(m.open_until - now)
        now = m.open_until
    assert periods == [10.0, 20.0, 40.0, 40.0, 40.0]
    assert m.openings == 5


def test_backoff_result_is_clamped_to_non_negative() -> None:
    class Broken:
        def delay(self, n: int, previous: float, random: object) -> float:
            return math.nan if n else -5.0

    m = machine(failure_threshold=1, reset_timeout=Broken())
    run(m, "f", now=3.0)
    assert m.open_until == 3.0


@pytest.mark.parametrize(
    ("settings", "parameter"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"success_threshold": 4, "half_open_max_calls": 3}, "success_threshold"),
        ({"reset_timeout": -1.0}, "reset_timeout"),
        ({"reset_timeout": math.nan}, "reset_timeout"),
        ({"reset_timeout": math.inf}, "reset_timeout"),
        ({"max_half_open_wait": 0.0}, "max_half_open_wait"),
    ],
)
def test_invalid_settings_name_the_parameter(settings: dict[str, object], parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        BreakerSettings(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "parameter"),
    [
        ({"failure_threshold": 1.5}, "failure_threshold"),
        ({"failure_threshold": True}, "failure_threshold"),
        ({"reset_timeout": "30"}, "reset_timeout"),
    ],
)
def test_wrong_types_name_the_parameter(settings: dict[str, object], parameter: str) -> None:
    with pytest.raises(TypeError, match=parameter):
        BreakerSettings(**settings)  # type: ignore[arg-type]


def test_durations_are_normalised_to_seconds() -> None:
    s = BreakerSettings(reset_timeout=timedelta(minutes=1), max_half_open_wait=timedelta(seconds=2))  # type: ignore[arg-type]
    assert s.reset_timeout == 60.0
    assert s.max_half_open_wait == 2.0


def test_state_values_are_the_health_json_strings() -> None:
    assert [s.value for s in CircuitState] == [
        "closed",
        "open",
        "half_open",
        "disabled",
        "metrics_only",
        "forced_open",
    ]
    assert str(CircuitState.HALF_OPEN) == "half_open"


def test_take_changes_never_hands_out_the_live_queue() -> None:
    m = machine(failure_threshold=1)
    assert m.take_changes() is None
    run(m, "f", now=1.0)
    taken = m.take_changes()
    assert taken == [(CLOSED, OPEN, 1.0, "consecutive_failures", None)]
    assert m.take_changes() is None
    m.transition_to(CLOSED, 2.0)
    assert taken == [(CLOSED, OPEN, 1.0, "consecutive_failures", None)]  # not in the batch already taken
    assert m.take_changes() == [(OPEN, CLOSED, 2.0, "manual", None)]
