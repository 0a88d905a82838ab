"""The circuit breaker's state machine, pure: no clock, no lock, no sleeping, no logging.

:class:`BreakerMachine` holds a breaker's state and counts and decides every transition. Its methods take ``now``
(seconds on the caller's monotonic clock) as an argument; the driver in ``_breaker.py`` reads the clock, holds the
lock around each method call, and publishes the transitions the machine queues (:meth:`BreakerMachine.take_changes`).

Failure models:

* consecutive failures (``window=None``, the seed's, SEED-NOTES §15.4): CLOSED → OPEN after ``failure_threshold``
  consecutive failures; a success resets the count;
* rates over a sliding window (``CountWindow``/``TimeWindow``, resilience4j's): CLOSED → OPEN once
  ``minimum_calls`` are in the window and the failure rate or the slow-call rate is at least its threshold
  (percent). A call running for ``slow_call_duration`` or more counts as slow before it ends.

Common rules, with the seed's defects fixed:

* OPEN → HALF_OPEN once the open period has passed, decided lazily when a caller asks for a permit; that caller is
  the first probe and is counted as one. The open period is ``reset_timeout``, or grows on repeated openings when
  ``reset_timeout`` is a backoff schedule (restarting after a clean close).
* HALF_OPEN admits ``half_open_max_calls`` probes per period in total. A probe that ends without an outcome
  (cancelled, excluded) returns its permit, so the period can never be stuck; ``max_half_open_wait`` bounds a probe
  that hangs. Consecutive model: a failing probe re-opens, ``success_threshold`` successes close. Rate models: the
  probes are judged as a fresh window of ``half_open_max_calls`` calls, deciding as soon as the verdict is certain.
* Every transition starts a new *epoch*. A permit is the epoch it was granted in (or, while slow calls are tracked,
  a ticket valid until the next transition); an outcome with a permit of an earlier epoch is ignored, so a call
  that started before the breaker last changed state never moves it.

Permits are plain ``int`` values (no allocation per call). The fields ``fast_epoch``, ``quiet_epoch`` and
``reject_until`` let the driver serve the common cases with one attribute read and no lock; each is updated so a
reader racing a transition sees the old state or the new one, never a mixture.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

from ._breaker_settings import BreakerSettings, CircuitState, OpenDurationSchedule, Permit, Transition
from ._windows import FAILED, OK, SLOW, InFlight, WindowAggregator, rate_exceeded

__all__ = ["BreakerMachine", "BreakerSettings", "CircuitState", "OpenDurationSchedule", "Permit", "Transition"]

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_DISABLED = CircuitState.DISABLED
_METRICS_ONLY = CircuitState.METRICS_ONLY
_FORCED_OPEN = CircuitState.FORCED_OPEN
_FOREVER = sys.float_info.max
"""The longest open period: a schedule's ``inf`` becomes this, so that ``retry_after`` stays a finite number."""


def _no_random() -> float:
    return 0.5


class BreakerMachine:
    """A circuit breaker's state and counts, and the rules that move them (pure; the caller serialises calls).

    Args:
        settings: the validated settings.
        now: the current time (seconds on the caller's monotonic clock).
        random: ``() -> float`` in [0, 1), passed to an :class:`OpenDurationSchedule` for jitter.

    Attributes read by the driver without a lock (each one attribute, so a racing read is never torn):
        fast_epoch: the current epoch when a permit can be granted with no bookkeeping, else -1.
        quiet_epoch: the current epoch when a success changes nothing but ``calls`` (consecutive model in CLOSED or
            METRICS_ONLY with no failure counted; DISABLED), else -1.
        reject_until: while OPEN, the time the open period ends (calls before it are rejected); else ``-inf``.
        window_epoch: the current epoch when a success can go straight to :meth:`window_success` (a rate model
            in CLOSED or METRICS_ONLY, slow calls not tracked), else -1.

    Other attributes (read under the driver's lock): ``state``, ``epoch``, ``window`` (the aggregator of a rate
    model, else ``None``), ``calls`` (outcomes since the last transition; in HALF_OPEN, probe outcomes),
    ``failed`` (failures among them), ``failures`` (consecutive failures in CLOSED), ``slow`` (slow probes),
    ``probes`` (permits granted and not returned in this HALF_OPEN period), ``open_until``, ``half_open_since``,
    ``openings`` (consecutive openings since the last clean close) and ``inflight`` (calls in progress, when slow
    calls are tracked), and ``changes``, the queued transitions: the driver may test it without the lock and
    drains it with :meth:`take_changes` under the lock.
    """

    __slots__ = (
        "_judging_calls",
        "_next_ticket",
        "_random",
        "_rejudge",
        "calls",
        "changes",
        "epoch",
        "failed",
        "failures",
        "fast_epoch",
        "half_open_since",
        "inflight",
        "last_open_duration",
        "open_until",
        "openings",
        "probes",
        "quiet_epoch",
        "reject_until",
        "settings",
        "slow",
        "state",
        "window",
        "window_epoch",
    )

    def __init__(self, settings: BreakerSettings, *, now: float, random: Callable[[], float] = _no_random) -> None:
        self.settings = settings
        self._random = random
        self.window: WindowAggregator | None = None if settings.window is None else settings.window.aggregator()
        if self.window is not None:
            self.window.judge_from = settings.judging_calls
        self.inflight = None if settings.slow_call_duration is None else InFlight(settings.slow_call_duration)
        self._judging_calls = settings.judging_calls
        self._next_ticket = -2  # tickets are negative; -1 is the "no epoch" marker of fast_epoch/quiet_epoch
        self._rejudge = False  # an overdue call left the window's count with no outcome: judge at the next `now`
        self.state = _CLOSED
        self.epoch = 0
        self.fast_epoch = -1 if self.inflight is not None else 0
        self.quiet_epoch = 0 if self.window is None else -1
        self.window_epoch = 0 if self.window is not None and self.inflight is None else -1
        self.reject_until = -math.inf
        self.calls = self.failed = self.failures = self.slow = self.probes = 0
        self.open_until = -math.inf
        self.half_open_since = now
        self.openings = 0
        self.last_open_duration = 0.0
        self.changes: list[Transition] = []

    # --- transitions ---------------------------------------------------------------------------------------------

    def _open_duration(self) -> float:
        """The next open period in seconds: ``reset_timeout``, or the schedule's value for this opening, mapped into
        ``[0, sys.float_info.max]`` (negative and NaN: 0; infinite or beyond float range: practically forever, as a
        ``reset_timeout`` of ``1e308``), so that ``retry_after`` and everything reporting it stay finite."""
        timeout = self.settings.reset_timeout
        if isinstance(timeout, int | float):
            return float(timeout)
        value = timeout.delay(self.openings, self.last_open_duration, self._random)
        try:
            duration = float(value)
        except OverflowError:  # an int beyond float range
            return _FOREVER
        if not duration >= 0.0:  # also NaN
            return 0.0
        return duration if duration <= _FOREVER else _FOREVER

    def _move(self, to: CircuitState, now: float, reason: str, rate: float | None = None) -> None:
        """Enter ``to`` (a new epoch even when ``to`` is the current state) and queue the transition."""
        # The open period first: a schedule that raises leaves the machine as it was.
        duration = self._open_duration() if to is _OPEN else 0.0
        # Readers without the lock look at fast_epoch/quiet_epoch/reject_until only: clear them before the epoch
        # changes and set them after, so a racing reader sees the old epoch or the new state, never a mixture.
        self.fast_epoch = -1
        self.quiet_epoch = -1
        self.window_epoch = -1
        self.reject_until = -math.inf
        before = self.state
        self.epoch += 1
        self.state = to
        self.calls = self.failed = self.failures = self.slow = self.probes = 0
        self._rejudge = False
        if self.inflight is not None:
            self.inflight.clear()
        window = self.window
        if window is not None and to is not _OPEN and to is not _FORCED_OPEN:
            window.reset()  # kept while OPEN so that statistics show what opened the breaker
        if to is _OPEN:
            self.openings += 1
            self.last_open_duration = duration
            self.open_until = now + duration
            self.reject_until = self.open_until
        else:
            self.open_until = -math.inf
            if to is _HALF_OPEN:
                self.half_open_since = now
            elif to is _CLOSED:
                self.openings = 0
                self.last_open_duration = 0.0
        if before is not to:
            self.changes.append(Transition(before, to, now, reason, rate))
        if to is _CLOSED or to is _DISABLED or to is _METRICS_ONLY:
            if self.inflight is None or to is _DISABLED:
                self.fast_epoch = self.epoch
            if window is None or to is _DISABLED:
                self.quiet_epoch = self.epoch
            elif self.inflight is None:
                self.window_epoch = self.epoch

    def take_changes(self) -> list[Transition] | None:
        """The queued transitions (oldest first), removed from the queue; ``None`` when there are none."""
        changes = self.changes
        if not changes:
            return None  # never hand out the live list: a later transition would be published twice
        self.changes = []
        return changes

    def transition_to(self, state: CircuitState, now: float) -> None:
        """Move to ``state`` now, whatever the current state (manual control).

        Entering CLOSED is a clean close (counts cleared, the open-period backoff restarts); entering OPEN starts an
        open period; entering HALF_OPEN starts a probe period. Every call starts a new epoch, so outcomes of calls
        already running are ignored.
        """
        self._move(CircuitState(state), now, "manual")

    # --- permits -------------------------------------------------------------------------------------------------

    def acquire(self, now: float) -> Permit | None:
        """Grant a permit or refuse (``None``); may move OPEN → HALF_OPEN, HALF_OPEN → OPEN, or CLOSED → OPEN (when
        calls in progress have become slow)."""
        state = self.state
        if state is _CLOSED or state is _METRICS_ONLY:
            inflight = self.inflight
            if inflight is None:
                return self.epoch
            if (inflight.promote(now) or self._rejudge) and state is _CLOSED and self._window_trips(now):
                return None
            ticket = self._next_ticket
            self._next_ticket = ticket - 1
            inflight.start(ticket, now)
            return ticket
        if state is _OPEN:
            if now < self.open_until:
                return None
            self._move(_HALF_OPEN, now, "reset_timeout")
            self.probes = 1
            return self.epoch
        if state is _HALF_OPEN:
            settings = self.settings
            if self.probes < settings.half_open_max_calls:
                self.probes += 1
                return self.epoch
            wait = settings.max_half_open_wait
            if wait is not None and now - self.half_open_since >= wait:
                self._move(_OPEN, now, "max_half_open_wait")
            return None
        if state is _FORCED_OPEN:
            return None
        return self.epoch  # DISABLED

    def retry_after(self, now: float) -> float | None:
        """Seconds until a probe will be admitted, when known: the rest of the open period while OPEN, else
        ``None`` (HALF_OPEN with every probe taken, FORCED_OPEN, or a state that admits calls)."""
        if self.state is _OPEN:
            left = self.open_until - now
            return left if left > 0.0 else 0.0
        return None

    # --- outcomes ------------------------------------------------------------------------------------------------

    def success(self, permit: Permit, now: float, duration: float = 0.0) -> None:
        """Record a successful call (``duration`` in seconds); ignored when ``permit`` is stale."""
        if self.window is not None:
            self._record(permit, now, duration, OK)
            return
        if permit != self.epoch:
            return
        state = self.state
        if state is _CLOSED or state is _METRICS_ONLY:
            self.calls += 1
            if self.failures:
                self.failures = 0
                self.quiet_epoch = self.epoch
        elif state is _HALF_OPEN:
            self.calls += 1  # every probe outcome so far was a success: a failed probe re-opens at once
            if self.calls >= self.settings.success_threshold:
                self._move(_CLOSED, now, "probes_succeeded")
        elif state is _DISABLED:
            self.calls += 1

    def failure(self, permit: Permit, now: float, duration: float = 0.0) -> None:
        """Record a failed call (``duration`` in seconds); ignored when ``permit`` is stale."""
        if self.window is not None:
            self._record(permit, now, duration, FAILED)
            return
        if permit != self.epoch:
            return
        state = self.state
        self.calls += 1
        self.failed += 1
        if state is _CLOSED or state is _METRICS_ONLY:
            self.quiet_epoch = -1
            self.failures += 1
            if state is _CLOSED and self.failures >= self.settings.failure_threshold:
                self._move(_OPEN, now, "consecutive_failures")
        elif state is _HALF_OPEN:
            self._move(_OPEN, now, "probes_failed")

    def release(self, permit: Permit) -> None:
        """A call ended without an outcome (cancelled, excluded exception): return its permit.

        A released call that was overdue leaves the rates' denominator, so they may rise: having no ``now``, the
        machine judges them at the next :meth:`acquire` or :meth:`counts`.
        """
        if permit < -1:
            if self.inflight is not None and self.inflight.finish(permit) == 2 and self.state is _CLOSED:
                self._rejudge = True
        elif permit == self.epoch and self.state is _HALF_OPEN and self.probes > 0:
            self.probes -= 1

    # --- rate models ---------------------------------------------------------------------------------------------

    def _record(self, permit: Permit, now: float, duration: float, outcome: int) -> None:
        settings = self.settings
        slow_after = settings.slow_call_duration
        if permit < -1:  # a tracked call of this CLOSED/METRICS_ONLY period, unless stale
            inflight = self.inflight
            found = 0 if inflight is None else inflight.finish(permit)
            if not found:
                return
            if found == 2 or (slow_after is not None and duration >= slow_after):
                outcome |= SLOW
        else:
            if permit != self.epoch:
                return
            if slow_after is not None and duration >= slow_after:
                outcome |= SLOW
        state = self.state
        if state is _CLOSED or state is _METRICS_ONLY:
            window = self.window
            assert window is not None
            before = window.calls
            evicted = window.record(now, outcome)
            if (
                state is _CLOSED
                and (outcome or evicted or before < self._judging_calls <= window.calls or self.inflight is not None)
                and (window.failures or window.slow or self.inflight is not None)
            ):
                self._window_trips(now)
        elif state is _HALF_OPEN:
            self.calls += 1
            if outcome & FAILED:
                self.failed += 1
            if outcome & SLOW:
                self.slow += 1
            self._judge_probes(now)
        elif state is _DISABLED:
            self.calls += 1
            if outcome & FAILED:
                self.failed += 1
            if outcome & SLOW:
                self.slow += 1

    def window_success(self, permit: Permit, now: float) -> None:
        """Record a success of normal duration: the hot path of the rate models.

        While ``permit == window_epoch`` this is ``if window.add_success(now): judge(now)``, which the driver may
        inline (``now`` matters to ``add_success`` only for a time window).
        """
        if permit != self.window_epoch:
            self.success(permit, now)
        elif self.window is not None and self.window.add_success(now):
            self.judge(now)

    def judge(self, now: float) -> None:
        """Rate models, CLOSED: open the breaker if the window's rates are at or above a threshold."""
        if self.state is _CLOSED and self.window is not None:
            self._window_trips(now)

    def _window_trips(self, now: float) -> bool:
        """CLOSED with a window: open if the window (with overdue calls counted as slow) exceeds a threshold."""
        window = self.window
        assert window is not None
        self._rejudge = False
        window.advance(now)
        overdue = 0 if self.inflight is None else self.inflight.overdue
        calls = window.calls + overdue
        if calls < self._judging_calls:
            return False
        settings = self.settings
        if rate_exceeded(calls, window.failures, settings.failure_rate_threshold):
            self._move(_OPEN, now, "failure_rate", 100.0 * window.failures / calls)
            return True
        slow = window.slow + overdue
        if settings.slow_call_duration is not None and rate_exceeded(calls, slow, settings.slow_call_rate_threshold):
            self._move(_OPEN, now, "slow_call_rate", 100.0 * slow / calls)
            return True
        return False

    def _judge_probes(self, now: float) -> None:
        """Rate models, HALF_OPEN: the probes form a window of ``half_open_max_calls``; decide once it is certain."""
        settings = self.settings
        size = settings.half_open_max_calls
        remaining = size - self.calls
        threshold = settings.failure_rate_threshold
        slow_threshold = settings.slow_call_rate_threshold
        tracks_slow = settings.slow_call_duration is not None
        if rate_exceeded(size, self.failed, threshold):
            self._move(_OPEN, now, "failure_rate", 100.0 * self.failed / size)
        elif tracks_slow and rate_exceeded(size, self.slow, slow_threshold):
            self._move(_OPEN, now, "slow_call_rate", 100.0 * self.slow / size)
        elif not rate_exceeded(size, self.failed + remaining, threshold) and not (
            tracks_slow and rate_exceeded(size, self.slow + remaining, slow_threshold)
        ):
            self._move(_CLOSED, now, "probes_succeeded")

    def counts(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` for statistics: the window's (with overdue calls) in a rate model outside
        HALF_OPEN, else the outcomes since the last transition.

        Advancing a time window to ``now`` may open the breaker (older successes left the window), exactly as the
        next recorded outcome would; and an OPEN breaker whose open period has passed moves to HALF_OPEN, as the
        next caller would, but without taking a probe (so that a reader such as the health endpoint does not see
        OPEN forever when no call comes: resilience4j's automatic transition). The driver publishes the transition.
        """
        if self.state is _OPEN and now >= self.open_until:
            self._move(_HALF_OPEN, now, "reset_timeout")
        window = self.window
        if window is None or self.state is _HALF_OPEN or self.state is _DISABLED:
            return self.calls, self.failed, self.slow
        if window.advance(now) or self._rejudge:  # outcomes left the window: judge now, as the next outcome would
            self.judge(now)
            return self.counts(now)
        overdue = 0 if self.inflight is None else self.inflight.overdue
        return window.calls + overdue, window.failures, window.slow + overdue

    def rates(self, now: float) -> tuple[float | None, float | None]:
        """``(failure_rate, slow_call_rate)`` in percent, or ``None`` where not judged (consecutive model, too few
        calls, slow calls not tracked)."""
        window = self.window
        if window is None or self.state is _DISABLED:
            return None, None
        calls, failures, slow = self.counts(now)
        needed = 1 if self.state is _HALF_OPEN else self._judging_calls
        if calls < needed or calls == 0:
            return None, None
        slow_rate = None if self.settings.slow_call_duration is None else 100.0 * slow / calls
        return 100.0 * failures / calls, slow_rate
