"""Hypothesis stateful test: the pure breaker state machine against a small reference model.

The reference model is written for clarity, not speed: it keeps the log of outcomes of the current period and
derives the consecutive-failure count from it, and it gives every permit a unique token, tracking which probes are
still out. Any sequence of acquires, outcomes, releases, time steps and manual transitions must leave both in the
same state, with the same admissions and the same ``retry_after``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from stalwart._breaker_state import BreakerMachine, BreakerSettings, CircuitState

_tokens = itertools.count()


@dataclass
class Reference:
    failure_threshold: int
    success_threshold: int
    reset_timeout: float
    half_open_max_calls: int
    max_half_open_wait: float | None
    state: str = "closed"
    period: int = 0
    log: list[str] = field(default_factory=list)  # outcomes recorded in the current period
    probes_out: set[int] = field(default_factory=set)  # probe tokens granted and not yet ended
    probes_done: int = 0
    opened_at: float = 0.0
    half_open_at: float = 0.0

    def enter(self, state: str, now: float) -> None:
        self.state = state
        self.period += 1
        self.log = []
        self.probes_out = set()
        self.probes_done = 0
        if state == "open":
            self.opened_at = now
        if state == "half_open":
            self.half_open_at = now

    def consecutive_failures(self) -> int:
        run = 0
        for outcome in reversed(self.log):
            if outcome != "f":
                break
            run += 1
        return run

    def acquire(self, now: float) -> tuple[int, int] | None:
        token = next(_tokens)
        if self.state == "open" and now >= self.opened_at + self.reset_timeout:
            self.enter("half_open", now)
        if self.state in ("open", "forced_open"):
            return None
        if self.state == "half_open":
            if len(self.probes_out) + self.probes_done >= self.half_open_max_calls:
                wait = self.max_half_open_wait
                if wait is not None and now >= self.half_open_at + wait:
                    self.enter("open", now)
                return None
            self.probes_out.add(token)
        return (self.period, token)

    def retry_after(self, now: float) -> float | None:
        if self.state != "open":
            return None
        return max(0.0, self.opened_at + self.reset_timeout - now)

    def outcome(self, permit: tuple[int, int], outcome: str, now: float) -> None:
        period, token = permit
        if period != self.period:
            return
        if self.state == "half_open":
            self.probes_out.discard(token)
            if outcome == "r":
                return
            self.probes_done += 1
            self.log.append(outcome)
            if outcome == "f":
                self.enter("open", now)
            elif self.log.count("s") >= self.success_threshold:
                self.enter("closed", now)
            return
        if outcome == "r" or self.state in ("open", "forced_open"):
            return
        self.log.append(outcome)
        if self.state == "closed" and self.consecutive_failures() >= self.failure_threshold:
            self.enter("open", now)


STATES = [s.value for s in CircuitState]


class BreakerComparison(RuleBasedStateMachine):
    permits = Bundle("permits")

    @initialize(
        failure_threshold=st.integers(1, 4),
        half_open_max_calls=st.integers(1, 4),
        success_fraction=st.floats(0.0, 1.0),
        reset_timeout=st.sampled_from([0.0, 1.0, 2.5, 10.0]),
        max_half_open_wait=st.sampled_from([None, 1.0, 3.0]),
    )
    def setup(
        self,
        failure_threshold: int,
        half_open_max_calls: int,
        success_fraction: float,
        reset_timeout: float,
        max_half_open_wait: float | None,
    ) -> None:
        success_threshold = max(1, round(success_fraction * half_open_max_calls))
        self.now = 0.0
        self.machine = BreakerMachine(
            BreakerSettings(
                failure_threshold=failure_threshold,
                success_threshold=success_threshold,
                reset_timeout=reset_timeout,
                half_open_max_calls=half_open_max_calls,
                max_half_open_wait=max_half_open_wait,
            ),
            now=0.0,
        )
        self.reference = Reference(
            failure_threshold, success_threshold, reset_timeout, half_open_max_calls, max_half_open_wait
        )

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 2.5, 10.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(target=permits)
    def acquire(self) -> object:
        real = self.machine.acquire(self.now)
        expected = self.reference.acquire(self.now)
        assert (real is None) == (expected is None), (real, expected)
        if real is None or expected is None:
            return None
        return (real, expected)

    def _end(self, pair: object, outcome: str) -> None:
        if pair is None:
            return
        real, expected = pair  # type: ignore[misc]
        if outcome == "s":
            self.machine.success(real, self.now)
        elif outcome == "f":
            self.machine.failure(real, self.now)
        else:
            self.machine.release(real)
        self.reference.outcome(expected, outcome, self.now)

    @rule(pair=consumes(permits))
    def succeed(self, pair: object) -> None:
        self._end(pair, "s")

    @rule(pair=consumes(permits))
    def fail(self, pair: object) -> None:
        self._end(pair, "f")

    @rule(pair=consumes(permits))
    def release(self, pair: object) -> None:
        self._end(pair, "r")

    @rule(state=st.sampled_from(STATES))
    def transition(self, state: str) -> None:
        self.machine.transition_to(CircuitState(state), self.now)
        self.reference.enter(state, self.now)

    @invariant()
    def same_state(self) -> None:
        assert self.machine.state.value == self.reference.state
        assert self.machine.retry_after(self.now) == self.reference.retry_after(self.now)

    @invariant()
    def probes_are_bounded(self) -> None:
        if self.machine.state is CircuitState.HALF_OPEN:
            ref = self.reference
            assert self.machine.probes == len(ref.probes_out) + ref.probes_done
            assert self.machine.probes <= ref.half_open_max_calls

    @invariant()
    def consecutive_failures_match(self) -> None:
        if self.machine.state in (CircuitState.CLOSED, CircuitState.METRICS_ONLY):
            assert self.machine.failures == self.reference.consecutive_failures()

    @invariant()
    def lock_free_fields_agree_with_the_state(self) -> None:
        m = self.machine
        assert (m.fast_epoch == m.epoch) == (
            m.state in (CircuitState.CLOSED, CircuitState.DISABLED, CircuitState.METRICS_ONLY)
        )
        if m.fast_epoch != m.epoch:
            assert m.fast_epoch == -1
        if m.quiet_epoch == m.epoch:
            assert m.failures == 0
        assert (m.reject_until > float("-inf")) == (m.state is CircuitState.OPEN)


BreakerComparison.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestBreakerComparison = BreakerComparison.TestCase
