"""Hypothesis stateful test of the rate models against a naive reference.

The reference keeps the full log of outcomes of the current period and recomputes the window from it at every
step (the last ``size`` outcomes, or those of the last ``seconds`` whole seconds), and it judges the rates after
every outcome and every observation. The machine keeps running totals and judges only when a rate can have risen;
both must agree on every admission, state and count. Calls in progress are tracked when ``slow_call_duration`` is
set: they become overdue (slow before they end) when a caller asks for a permit.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from stalwart._breaker_state import BreakerMachine, BreakerSettings, CircuitState
from stalwart._windows import CountWindow, TimeWindow

_tokens = itertools.count()


@dataclass
class RateReference:
    kind: str
    size: int
    minimum_calls: int
    threshold: float
    slow_after: float | None
    slow_threshold: float
    max_calls: int
    reset_timeout: float
    state: str = "closed"
    period: int = 0
    log: list[tuple[float, bool, bool]] = field(default_factory=list)  # (time, failed, slow)
    pending: dict[int, float] = field(default_factory=dict)
    overdue: set[int] = field(default_factory=set)
    probes_out: set[int] = field(default_factory=set)
    probe_log: list[tuple[bool, bool]] = field(default_factory=list)
    other_log: list[tuple[bool, bool]] = field(default_factory=list)  # DISABLED
    opened_at: float = 0.0

    def enter(self, state: str) -> None:
        self.state = state
        self.period += 1
        self.pending, self.overdue, self.probes_out = {}, set(), set()
        self.probe_log, self.other_log = [], []
        if state not in ("open", "forced_open"):
            self.log = []

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        if self.kind == "count":
            return self.log[-self.size :]
        return [entry for entry in self.log if math.floor(entry[0]) > math.floor(now) - self.size]

    def counts(self, now: float) -> tuple[int, int, int]:
        if self.state == "half_open":
            log = self.probe_log
        elif self.state == "disabled":
            log = self.other_log
        else:
            live = self.window(now)
            extra = len(self.overdue)
            return len(live) + extra, sum(f for _, f, _ in live), sum(s for _, _, s in live) + extra
        return len(log), sum(f for f, _ in log), sum(s for _, s in log)

    def judging_calls(self) -> int:
        return min(self.minimum_calls, self.size) if self.kind == "count" else self.minimum_calls

    def judge(self, now: float) -> bool:
        if self.state != "closed":
            return False
        calls, failed, slow = self.counts(now)
        if calls < self.judging_calls():
            return False
        if failed * 100.0 >= self.threshold * calls or (
            self.slow_after is not None and slow * 100.0 >= self.slow_threshold * calls
        ):
            self.enter("open")
            self.opened_at = now
            return True
        return False

    def acquire(self, now: float) -> tuple[int, int] | None:
        token = next(_tokens)
        if self.state == "open" and now >= self.opened_at + self.reset_timeout:
            self.enter("half_open")
        if self.state in ("open", "forced_open"):
            return None
        if self.state == "half_open":
            if len(self.probes_out) + len(self.probe_log) >= self.max_calls:
                return None
            self.probes_out.add(token)
        elif self.state in ("closed", "metrics_only") and self.slow_after is not None:
            moved = {t for t, start in self.pending.items() if now - start >= self.slow_after}
            for t in moved:
                del self.pending[t]
            self.overdue |= moved
            if moved and self.judge(now):
                return None
            self.pending[token] = now
        return (self.period, token)

    def outcome(self, permit: tuple[int, int], kind: str, now: float, duration: float) -> None:
        period, token = permit
        if period != self.period:
            return
        slow = self.slow_after is not None and duration >= self.slow_after
        if self.state in ("closed", "metrics_only") and self.slow_after is not None:
            if token in self.pending:
                del self.pending[token]
            elif token in self.overdue:
                self.overdue.discard(token)
                slow = True
            else:
                return
        if kind == "r":
            self.probes_out.discard(token)
            return
        failed = kind == "f"
        if self.state in ("closed", "metrics_only"):
            self.log.append((now, failed, slow))
            self.judge(now)
        elif self.state == "half_open":
            self.probes_out.discard(token)
            self.probe_log.append((failed, slow))
            self.judge_probes(now)
        elif self.state == "disabled":
            self.other_log.append((failed, slow))

    def judge_probes(self, now: float) -> None:
        m = self.max_calls
        n, failed, slow = self.counts(now)
        rest = m - n
        tracks = self.slow_after is not None
        if failed * 100.0 >= self.threshold * m or (tracks and slow * 100.0 >= self.slow_threshold * m):
            self.enter("open")
            self.opened_at = now
        elif (failed + rest) * 100.0 < self.threshold * m and not (
            tracks and (slow + rest) * 100.0 >= self.slow_threshold * m
        ):
            self.enter("closed")


class RateComparison(RuleBasedStateMachine):
    permits = Bundle("permits")

    @initialize(
        kind=st.sampled_from(["count", "time"]),
        size=st.integers(1, 6),
        minimum_calls=st.integers(1, 8),
        threshold=st.sampled_from([20.0, 50.0, 100.0]),
        slow_after=st.sampled_from([None, None, 1.0, 2.5]),
        slow_threshold=st.sampled_from([50.0, 100.0]),
        max_calls=st.integers(1, 4),
    )
    def setup(
        self,
        kind: str,
        size: int,
        minimum_calls: int,
        threshold: float,
        slow_after: float | None,
        slow_threshold: float,
        max_calls: int,
    ) -> None:
        self.now = 0.0
        window = CountWindow(size) if kind == "count" else TimeWindow(size)
        self.machine = BreakerMachine(
            BreakerSettings(
                window=window,
                minimum_calls=minimum_calls,
                failure_rate_threshold=threshold,
                slow_call_duration=slow_after,
                slow_call_rate_threshold=slow_threshold,
                half_open_max_calls=max_calls,
                success_threshold=1,
                reset_timeout=2.0,
            ),
            now=0.0,
        )
        self.reference = RateReference(
            kind, size, minimum_calls, threshold, slow_after, slow_threshold, max_calls, reset_timeout=2.0
        )

    @rule(seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 7.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(target=permits)
    def acquire(self) -> object:
        real = self.machine.acquire(self.now)
        expected = self.reference.acquire(self.now)
        assert (real is None) == (expected is None), (real, expected, self.reference.state)
        if real is None or expected is None:
            return None
        return (real, expected)

    def _end(self, pair: object, kind: str, duration: float, fast: bool = False) -> None:
        if pair is None:
            return
        real, expected = pair  # type: ignore[misc]
        m = self.machine
        if kind == "s" and fast:
            m.window_success(real, self.now)
        elif kind == "s":
            m.success(real, self.now, duration)
        elif kind == "f":
            m.failure(real, self.now, duration)
        else:
            m.release(real)
        self.reference.outcome(expected, kind, self.now, duration)

    @rule(pair=consumes(permits), duration=st.sampled_from([0.0, 1.0, 3.0]))
    def succeed(self, pair: object, duration: float) -> None:
        self._end(pair, "s", duration)

    @rule(pair=consumes(permits))
    def succeed_fast(self, pair: object) -> None:
        self._end(pair, "s", 0.0, fast=True)

    @rule(pair=consumes(permits), duration=st.sampled_from([0.0, 1.0, 3.0]))
    def fail(self, pair: object, duration: float) -> None:
        self._end(pair, "f", duration)

    @rule(pair=consumes(permits))
    def release(self, pair: object) -> None:
        self._end(pair, "r", 0.0)

    @rule(state=st.sampled_from([None] * 12 + [s.value for s in CircuitState]))  # manual moves are rare
    def transition(self, state: str | None) -> None:
        if state is None:
            return
        self.machine.transition_to(CircuitState(state), self.now)
        self.reference.enter(state)
        if state == "open":
            self.reference.opened_at = self.now

    @invariant()
    def agree(self) -> None:
        ref = self.reference
        if ref.state == "open" and self.now >= ref.opened_at + ref.reset_timeout:
            ref.enter("half_open")  # an observation makes the lazy transition too, taking no probe
        ref.judge(self.now)  # an observation applies the rules at `now`, as the machine's counts() does
        real_counts = self.machine.counts(self.now)
        assert self.machine.state.value == ref.state
        assert real_counts == ref.counts(self.now), (ref.state, real_counts, ref.counts(self.now))


RateComparison.TestCase.settings = settings(max_examples=400, stateful_step_count=80, deadline=None)
TestRateComparison = RateComparison.TestCase
