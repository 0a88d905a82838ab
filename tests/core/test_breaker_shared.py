"""SharedMachine, the pure half of a breaker shared through a store: what it sends, how it adopts the fleet's state."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart import CountWindow, TimeWindow
from stalwart._breaker_settings import BreakerSettings, CircuitState
from stalwart._breaker_shared import Claim, FleetView, Proposal, SharedMachine
from stalwart._windows import FAILED, OK, SLOW

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN


def view(state: CircuitState = CLOSED, epoch: int = 100, **fields: Any) -> FleetView:
    values: dict[str, Any] = {
        "state": state,
        "epoch": epoch,
        "reason": "initial",
        "rate": None,
        "open_remaining": 0.0,
        "openings": 0,
        "last_open_duration": 0.0,
        "granted": 0,
        "applied": False,
        "calls": 0,
        "failures": 0,
        "slow": 0,
        "consecutive": 0,
        "probes": 0,
    }
    values.update(fields)
    return FleetView(**values)


def machine(**settings: Any) -> tuple[SharedMachine, list[str]]:
    """A connected machine at fleet epoch 100 (CLOSED), and the list its wake-ups are appended to."""
    flush_size = settings.pop("flush_size", 1000)
    m = SharedMachine(BreakerSettings(**settings), now=0.0, flush_size=flush_size)
    woken: list[str] = []
    m.set_wake(lambda: woken.append("wake"))
    m.apply(view(), 0.0)
    assert m.take_changes() is None
    return m, woken


def test_before_the_first_sync_it_is_a_local_breaker() -> None:
    m = SharedMachine(BreakerSettings(failure_threshold=1, reset_timeout=5.0), now=0.0)
    assert not m.connected
    assert m.fleet_epoch == -1
    m.failure(m.acquire(0.0) or 0, 0.0)
    assert m.state is OPEN
    assert m.acquire(5.0) is not None  # a local probe: the local rules, OPEN -> HALF_OPEN
    assert m.state is HALF_OPEN
    request = m.take(0.0)
    assert request.epoch == -1
    assert request.proposal is None  # the local breaker moved on: its trip is no longer news (see below)


def test_a_trip_before_the_first_sync_is_proposed_against_no_known_epoch() -> None:
    m = SharedMachine(BreakerSettings(failure_threshold=1), now=0.0)
    m.failure(m.acquire(0.0) or 0, 0.0)
    proposal = m.take(0.0).proposal
    assert proposal is not None
    assert (proposal.state, proposal.reason, proposal.expected_epoch) == (OPEN, "consecutive_failures", -1)
    assert proposal.open_duration == 30.0


def test_consecutive_model_batches_counts_and_the_trailing_failures() -> None:
    m, _ = machine(failure_threshold=10)
    for outcome in "sffsff":  # success, failure, ...
        permit = m.acquire(0.0)
        assert permit is not None
        if outcome == "s":
            m.success(permit, 0.0)
        else:
            m.failure(permit, 0.0)
    request = m.take(0.0)
    assert (request.epoch, request.ok, request.failed, request.trailing) == (100, 2, 4, 2)
    assert request.codes == b""
    again = m.take(0.0)
    assert (again.ok, again.failed, again.trailing) == (0, 0, 0)
    m.failure(m.acquire(0.0) or 0, 0.0)  # the run goes on across batches: 3 now, 1 of them in this batch
    assert m.take(0.0).trailing == 1


def test_quiet_successes_of_the_lock_free_path_are_counted_too() -> None:
    m, _ = machine()
    assert m.quiet_epoch == m.epoch  # the driver's lock-free success path: calls += 1
    m.calls += 5
    request = m.take(0.0)
    assert (request.ok, request.failed) == (5, 0)


def test_rate_models_send_their_outcomes_in_order_and_wake_at_flush_size() -> None:
    m, woken = machine(window=CountWindow(4), failure_rate_threshold=100.0, flush_size=3)
    assert m.window is not None
    m.window.add_success(0.0)
    m.success(m.acquire(0.0) or 0, 0.0)
    assert woken == []
    m.failure(m.acquire(0.0) or 0, 0.0)
    assert woken == ["wake"]  # the batch reached flush_size
    for _ in range(2):
        m.failure(m.acquire(0.0) or 0, 0.0)
    assert m.state is CLOSED
    request = m.take(0.0)
    assert (request.ok, request.failed, request.slow) == (2, 3, 0)
    assert request.codes == bytes([OK, FAILED, FAILED, FAILED])  # the last 4 (the window's size) in order


def test_time_window_sends_counts_without_codes() -> None:
    m, _ = machine(window=TimeWindow(10), slow_call_duration=1.0)
    permit = m.acquire(0.0)
    assert permit is not None
    m.success(permit, 0.0, 2.0)  # slow success
    permit = m.acquire(0.0)
    assert permit is not None
    m.failure(permit, 0.0, 3.0)  # slow failure
    request = m.take(0.0)
    assert (request.ok, request.failed, request.slow, request.codes) == (1, 1, 2, b"")


def test_a_local_trip_opens_at_once_and_is_proposed_against_the_known_epoch() -> None:
    m, woken = machine(failure_threshold=2, reset_timeout=7.0)
    for _ in range(2):
        m.failure(m.acquire(0.0) or 0, 0.0)
    assert m.state is OPEN
    assert woken == ["wake"]
    assert m.acquire(1.0) is None  # this process stops calling at once
    request = m.take(0.0)
    assert request.proposal == Proposal(OPEN, "consecutive_failures", None, 7.0, 100)
    # the fleet applied it: adopt the fleet's open period without a second local transition
    m.take_changes()
    m.apply(view(OPEN, 101, applied=True, open_remaining=6.5, openings=1, last_open_duration=7.0), 0.5)
    assert m.take_changes() is None
    assert m.open_until == 7.0
    assert m.fleet_epoch == 101


def test_a_fleet_transition_is_adopted_and_published() -> None:
    m, _ = machine(window=CountWindow(10), minimum_calls=5)
    permit = m.acquire(0.0)
    m.apply(view(OPEN, 105, reason="failure_rate", rate=60.0, open_remaining=30.0, openings=1), 2.0)
    changes = m.take_changes()
    assert changes is not None
    assert [(c.before, c.after, c.reason, c.rate) for c in changes] == [(CLOSED, OPEN, "failure_rate", 60.0)]
    assert m.retry_after(2.0) == 30.0
    assert m.openings == 1
    assert m.acquire(3.0) is None
    m.success(permit or 0, 3.0)  # a call admitted before the fleet opened: ignored, not batched
    assert m.take(0.0).ok == 0


def test_a_fleet_epoch_change_in_the_same_state_drops_older_outcomes() -> None:
    m, _ = machine()
    permit = m.acquire(0.0)
    m.calls += 3
    m.apply(view(CLOSED, 108), 1.0)  # the fleet opened and closed again meanwhile
    assert m.take_changes() is None  # no visible change here
    m.failure(permit or 0, 1.0)  # started before: stale
    request = m.take(0.0)
    assert (request.epoch, request.ok, request.failed) == (108, 0, 0)


def test_half_open_probes_need_fleet_permits() -> None:
    m, woken = machine(failure_threshold=1, half_open_max_calls=2, success_threshold=2, reset_timeout=1.0)
    m.apply(view(OPEN, 101, open_remaining=1.0, openings=1), 0.0)
    m.take_changes()
    woken.clear()
    assert m.acquire(0.5) is None  # open period
    assert m.take(0.0).demand == 0
    assert m.acquire(1.0) is None  # past it: no permit yet; ask the fleet
    assert m.acquire(1.0) is None
    assert m.acquire(1.0) is None
    assert woken == ["wake"]  # woken once for the demand
    assert m.retry_after(1.0) is None
    request = m.take(0.0)
    assert request.demand == 2  # capped at half_open_max_calls
    m.apply(view(HALF_OPEN, 102, reason="reset_timeout", granted=2, probes=2), 1.1)
    assert m.state is HALF_OPEN
    m.take_changes()
    first, second = m.acquire(1.1), m.acquire(1.1)
    assert first is not None
    assert second is not None
    assert m.acquire(1.1) is None  # both permits used
    m.success(first, 1.2)
    m.release(second)  # ended without an outcome: the permit goes back to the fleet
    assert m.state is HALF_OPEN  # probes are judged by the fleet, not here
    request = m.take(0.0)
    assert (request.probe_ok, request.probe_failed, request.returned, request.demand) == (1, 0, 1, 1)
    m.apply(view(CLOSED, 103, reason="probes_succeeded"), 1.3)
    changes = m.take_changes()
    assert changes is not None
    assert [(c.before, c.after, c.reason) for c in changes] == [(HALF_OPEN, CLOSED, "probes_succeeded")]


def test_slow_and_failed_probes_are_reported() -> None:
    m, _ = machine(window=CountWindow(10), slow_call_duration=1.0, half_open_max_calls=3)
    m.apply(view(HALF_OPEN, 101, granted=3, probes=3), 0.0)
    permits = [m.acquire(0.0) for _ in range(3)]
    m.failure(permits[0] or 0, 0.0, 0.1)
    m.success(permits[1] or 0, 0.0, 2.0)
    m.success(-1234, 0.0)  # stale: ignored
    request = m.take(0.0)
    assert (request.probe_ok, request.probe_failed, request.probe_slow) == (1, 1, 1)
    assert m.state is HALF_OPEN


def test_unused_permits_go_back_after_a_sync_interval() -> None:
    m, _ = machine(half_open_max_calls=3)
    m.apply(view(HALF_OPEN, 101, granted=3, probes=3), 0.0)
    assert m.acquire(0.0) is not None
    assert m.take(0.0).returned == 0  # granted just before: kept for now
    assert m.take(0.0).returned == 2  # unused for a whole interval
    assert m.tokens == 0
    assert m.acquire(0.0) is None


def test_manual_transitions_are_proposed_unconditionally_and_survive_a_failed_sync() -> None:
    m, _ = machine()
    m.transition_to(CircuitState.FORCED_OPEN, 0.0)
    request = m.take(0.0)
    assert request.proposal == Proposal(CircuitState.FORCED_OPEN, "manual", None, 0.0, None)
    m.fail(request)
    assert not m.connected
    assert m.take(0.0).proposal == request.proposal  # kept for the next sync


def test_a_newer_local_transition_is_kept_until_it_is_sent() -> None:
    m, _ = machine(failure_threshold=1)
    request = m.take(0.0)  # a sync starts ...
    m.failure(m.acquire(0.0) or 0, 0.0)  # ... this process trips meanwhile
    m.take_changes()
    m.apply(view(CLOSED, 100), 0.1)  # the answer to the earlier request
    assert request.proposal is None
    assert m.state is OPEN  # no flapping back to CLOSED
    assert m.take(0.0).proposal is not None


def test_disconnected_it_decides_locally_and_proposes_a_trip_on_return() -> None:
    m, _ = machine(failure_threshold=1, reset_timeout=5.0)
    m.fail(m.take(0.0))
    m.failure(m.acquire(0.0) or 0, 0.0)
    assert m.state is OPEN
    request = m.take(0.0)
    assert request.proposal is not None
    assert request.proposal.expected_epoch == 100
    m.fail(request)
    m.apply(view(OPEN, 101, applied=True, open_remaining=5.0, openings=1, last_open_duration=5.0), 0.2)
    assert m.connected
    assert m.state is OPEN


def test_disconnected_recovery_cancels_the_trip_proposal_and_adopts_the_fleet() -> None:
    m, _ = machine(failure_threshold=1, success_threshold=1, half_open_max_calls=1, reset_timeout=1.0)
    m.fail(m.take(0.0))
    m.failure(m.acquire(0.0) or 0, 0.0)
    m.success(m.acquire(1.0) or 0, 1.0)  # local HALF_OPEN probe succeeds: closed again
    assert m.state is CLOSED
    assert m.take(0.0).proposal is None
    m.take_changes()
    m.apply(view(CLOSED, 104), 2.0)
    assert m.take_changes() is None
    assert m.fleet_epoch == 104


def test_statistics_come_from_the_fleet_while_connected() -> None:
    m, _ = machine(window=CountWindow(10), minimum_calls=4)
    m.apply(view(CLOSED, 100, calls=8, failures=2, slow=0), 0.0)
    assert m.counts(0.0) == (8, 2, 0)
    assert m.rates(0.0) == (25.0, None)
    m.fail(m.take(0.0))
    assert m.counts(0.0) == (0, 0, 0)  # local ones


def test_disconnect_bounds_the_batch() -> None:
    m, _ = machine(window=CountWindow(10), flush_size=5)
    m.disconnect()
    assert m.window is not None
    for _ in range(12):
        m.window.add_success(0.0)
    assert len(m.batch) < 5
    assert not m.connected


@pytest.mark.parametrize("slow_after", [None, 1.0])
def test_outcome_codes_are_the_window_flags(slow_after: float | None) -> None:
    m, _ = machine(window=CountWindow(3), slow_call_duration=slow_after)
    permit = m.acquire(0.0)
    m.failure(permit if permit is not None else 0, 0.0, 5.0)
    codes = m.take(0.0).codes
    assert codes == bytes([FAILED | SLOW if slow_after else FAILED])


# --- claims: what the store restores should it lose the fleet's state ------------------------------------------------


def test_closed_and_the_states_that_admit_calls_claim_nothing() -> None:
    m, _ = machine()
    assert m.take(0.0).claim is None
    for state in (CircuitState.METRICS_ONLY, CircuitState.DISABLED):
        m.apply(view(state, 101, reason="manual"), 0.0)
        assert m.take(0.0).claim is None


def test_open_claims_the_rest_of_its_open_period_on_its_own_clock() -> None:
    m, _ = machine(window=CountWindow(10), minimum_calls=5)
    m.apply(
        view(OPEN, 105, reason="failure_rate", rate=60.0, open_remaining=30.0, openings=2, last_open_duration=30.0), 2.0
    )
    assert m.take(12.5).claim == Claim(OPEN, "failure_rate", 60.0, 19.5, 2, 30.0)
    assert m.take(40.0).claim == Claim(OPEN, "failure_rate", 60.0, 0.0, 2, 30.0)  # over: never negative


def test_a_local_trip_is_claimed_with_its_own_reason() -> None:
    m, _ = machine(failure_threshold=1, reset_timeout=7.0)
    m.failure(m.acquire(0.0) or 0, 0.0)
    request = m.take(1.0)
    assert request.claim == Claim(OPEN, "consecutive_failures", None, 6.0, 1, 7.0)
    assert request.proposal is not None  # the proposal too: the claim matters only if the store lost its state


def test_half_open_claims_open_with_its_open_period_over() -> None:
    m, _ = machine(window=CountWindow(10), minimum_calls=5)
    m.apply(
        view(OPEN, 101, reason="slow_call_rate", rate=80.0, open_remaining=1.0, openings=1, last_open_duration=1.0), 0.0
    )
    m.apply(view(HALF_OPEN, 102, reason="reset_timeout", granted=1, probes=1, openings=1, last_open_duration=1.0), 1.0)
    assert m.state is HALF_OPEN
    assert m.take(1.0).claim == Claim(OPEN, "slow_call_rate", 80.0, 0.0, 1, 1.0)


def test_forced_open_claims_forced_open() -> None:
    m, _ = machine()
    m.transition_to(FORCED_OPEN, 0.0)
    assert m.take(3.0).claim == Claim(FORCED_OPEN, "manual", None, 0.0, 0, 0.0)


def test_disconnected_open_is_claimed_on_return() -> None:
    m, _ = machine(failure_threshold=1, reset_timeout=5.0)
    m.apply(view(OPEN, 101, reason="consecutive_failures", open_remaining=5.0, openings=1, last_open_duration=5.0), 0.0)
    m.fail(m.take(0.0))
    assert not m.connected
    request = m.take(2.0)
    assert request.proposal is None
    assert request.claim == Claim(OPEN, "consecutive_failures", None, 3.0, 1, 5.0)
    # the store restored it (its state was lost): kept without a transition, the store's period adopted
    m.take_changes()
    m.apply(view(OPEN, 5000, reason="consecutive_failures", applied=True, open_remaining=3.0, openings=1), 2.1)
    assert m.state is OPEN
    assert m.take_changes() is None
    assert m.open_until == pytest.approx(5.1)
    assert m.fleet_epoch == 5000
