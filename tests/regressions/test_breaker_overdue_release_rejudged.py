"""Regression: handing back an overdue call left a rate above its threshold unjudged.

What was wrong: with slow calls tracked (``slow_call_duration``), a call still running after that long counts as a
slow call in the window before it ends, so it is in the rates' denominator. When such a call ended with no outcome
(``release``: cancelled, excluded exception, a raising predicate, ...) it left the denominator and the failure or
slow-call rate rose, possibly to its threshold, but the pure machine judged the rates only when an outcome was
recorded or when calls became overdue: the CLOSED breaker kept admitting calls, and ``statistics()`` showed a
failure rate at the threshold with the state CLOSED. Found by the stateful comparison with the naive reference
(``tests/core/test_breaker_state_stateful_rates.py``), which judges after every step.

``BreakerMachine.release`` takes no ``now``: it marks the rates for judging, and the next ``acquire(now)`` or
``counts(now)`` (``statistics()``) judges them.
"""

from __future__ import annotations

import stalwart as sw
from stalwart._breaker_state import BreakerMachine, BreakerSettings, CircuitState
from stalwart.testing import FakeClock


def test_releasing_an_overdue_call_judges_the_rates() -> None:
    clock = FakeClock(start=100.0)
    breaker = sw.CircuitBreaker(
        "dep",
        clock=clock,
        window=sw.CountWindow(2),
        minimum_calls=1,
        failure_rate_threshold=50.0,
        slow_call_duration=1.0,
    )
    hung = breaker.acquire()
    breaker.record_success(breaker.acquire(), 0.0)
    failing = breaker.acquire()
    clock.advance(1.0)
    breaker.release(breaker.acquire())  # both calls still running are overdue now: 3 calls, 1 failure below
    breaker.record_failure(failing, 0.0)
    assert breaker.statistics().failure_rate == 100.0 / 3

    breaker.release(hung)  # ends with no outcome: 1 failure in 2 calls, 50 %
    stats = breaker.statistics()
    assert stats.failure_rate == 50.0
    assert stats.state is sw.CircuitState.OPEN


def test_the_next_permit_judges_them_too() -> None:
    machine = BreakerMachine(
        BreakerSettings(window=sw.CountWindow(2), minimum_calls=1, slow_call_duration=1.0),
        now=0.0,
    )
    hung = machine.acquire(0.0)
    failing = machine.acquire(0.0)
    assert hung is not None
    assert failing is not None
    machine.success(machine.acquire(0.0), 0.0)  # type: ignore[arg-type]
    assert machine.acquire(1.0) is not None  # promotes both: 3 calls
    machine.failure(failing, 1.0)
    assert machine.state is CircuitState.CLOSED
    machine.release(hung)
    assert machine.acquire(1.0) is None  # refused: 1 failure in 2 calls opened the breaker
    assert machine.state is CircuitState.OPEN
