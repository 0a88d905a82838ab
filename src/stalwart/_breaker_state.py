"""The circuit breaker's state machine, pure: no clock, no lock, no sleeping, no logging.

:class:`BreakerMachine` holds a breaker's state and counts and decides every transition. Its methods take ``now``
(seconds on the caller's monotonic clock) as an argument; the driver in ``_breaker.py`` reads the clock, holds the
lock around each method call, and publishes the transitions the machine queues in :attr:`BreakerMachine.changes`.

The consecutive-failure model is the seed's (SEED-NOTES §15.4), with its defects fixed:

* CLOSED → OPEN after ``failure_threshold`` consecutive failures; a success resets the count.
* OPEN → HALF_OPEN once the open period has passed, decided lazily when a caller asks for a permit. The caller that
  makes the transition is the first probe and is counted as one.
* HALF_OPEN admits ``half_open_max_calls`` probes per HALF_OPEN period in total. A probe that ends without an
  outcome (cancelled, excluded exception) returns its permit, so the period can never be stuck. A failing probe
  re-opens the breaker; ``success_threshold`` successful probes close it.
* Every transition starts a new *epoch*. A permit is the epoch it was granted in, and an outcome reported with a
  permit of an earlier epoch is ignored: a call that started before the breaker last changed state never moves it.

Permits are plain ``int`` values (no allocation per call). The fields :attr:`BreakerMachine.fast_epoch`,
:attr:`BreakerMachine.quiet_epoch` and :attr:`BreakerMachine.reject_until` let the driver serve the common cases
with a single attribute read and no lock; each is updated so that a reader racing a transition sees either the old
state or the new one, never a mixture.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeAlias, runtime_checkable

from ._config import check_int, to_seconds, to_seconds_or_none

__all__ = [
    "BreakerMachine",
    "BreakerSettings",
    "CircuitState",
    "OpenDurationSchedule",
    "Permit",
    "Transition",
]

Permit: TypeAlias = int
"""An opaque token granted by ``acquire()``; hand it back to exactly one of the record/release methods."""


class CircuitState(StrEnum):
    """The states of a circuit breaker; the values are the strings used in statistics and the health JSON.

    Members:
        CLOSED: calls pass and their outcomes are recorded.
        OPEN: calls are rejected until the open period ends.
        HALF_OPEN: a limited number of probe calls decide between CLOSED and OPEN.
        DISABLED: every call passes and nothing is recorded.
        METRICS_ONLY: calls pass and outcomes are recorded and reported, but the breaker never trips.
        FORCED_OPEN: every call is rejected until the breaker is reset or moved to another state.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLED = "disabled"
    METRICS_ONLY = "metrics_only"
    FORCED_OPEN = "forced_open"


_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_DISABLED = CircuitState.DISABLED
_METRICS_ONLY = CircuitState.METRICS_ONLY
_FORCED_OPEN = CircuitState.FORCED_OPEN

Transition: TypeAlias = tuple[CircuitState, CircuitState, float]
"""``(from_state, to_state, at)``: a transition queued for the driver to log and emit; ``at`` is ``now``."""


@runtime_checkable
class OpenDurationSchedule(Protocol):
    """Anything with the ``delay`` method of :class:`stalwart.Backoff`, used as ``reset_timeout`` for a backoff of
    the open period on repeated openings.

    ``delay(n, previous, random)`` returns the open period in seconds for the ``n``-th consecutive opening (``n`` is
    0 for the first opening after a clean close), ``previous`` being the previous open period (0.0 before the
    first) and ``random`` a ``() -> float`` in [0, 1) for jitter.
    """

    def delay(self, n: int, previous: float, random: Callable[[], float]) -> float: ...


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The validated settings of a :class:`BreakerMachine`.

    Attributes:
        failure_threshold: consecutive failures that open a CLOSED breaker (``int`` ≥ 1, default 5).
        success_threshold: successful probes that close a HALF_OPEN breaker (``int`` ≥ 1, default 3; at most
            ``half_open_max_calls``).
        reset_timeout: the open period in seconds (``float`` ≥ 0, default 30.0), or an
            :class:`OpenDurationSchedule` (a ``Backoff``) giving a longer period on repeated openings; the count of
            openings restarts after a clean close.
        half_open_max_calls: probes admitted per HALF_OPEN period (``int`` ≥ 1, default 3).
        max_half_open_wait: seconds a HALF_OPEN period may last once all its probes are taken before the breaker
            goes back to OPEN (bounds a hung probe); ``None`` (default) waits for the probes.

    Raises:
        TypeError: a parameter has the wrong type.
        ValueError: a parameter is out of range, or ``success_threshold > half_open_max_calls``.
    """

    failure_threshold: int = 5
    success_threshold: int = 3
    reset_timeout: float | OpenDurationSchedule = 30.0
    half_open_max_calls: int = 3
    max_half_open_wait: float | None = None

    def __post_init__(self) -> None:
        check_int(self.failure_threshold, "failure_threshold", minimum=1)
        check_int(self.success_threshold, "success_threshold", minimum=1)
        check_int(self.half_open_max_calls, "half_open_max_calls", minimum=1)
        if self.success_threshold > self.half_open_max_calls:
            raise ValueError(
                f"success_threshold ({self.success_threshold}) must not exceed half_open_max_calls "
                f"({self.half_open_max_calls}): the breaker could never close"
            )
        if not isinstance(self.reset_timeout, OpenDurationSchedule):
            object.__setattr__(self, "reset_timeout", to_seconds(self.reset_timeout, "reset_timeout"))
        wait = to_seconds_or_none(self.max_half_open_wait, "max_half_open_wait", allow_zero=False)
        object.__setattr__(self, "max_half_open_wait", wait)


def _no_random() -> float:
    return 0.5


class BreakerMachine:
    """A circuit breaker's state and counts, and the rules that move them (pure; the caller serialises calls).

    Args:
        settings: the validated settings.
        now: the current time (seconds on the caller's monotonic clock).
        random: ``() -> float`` in [0, 1), passed to an :class:`OpenDurationSchedule` for jitter.

    Attributes read by the driver without a lock (each one attribute, so a racing read is never torn):
        fast_epoch: the current epoch when a permit can be granted with no bookkeeping (CLOSED, DISABLED,
            METRICS_ONLY), else -1.
        quiet_epoch: the current epoch when a success changes nothing but ``calls`` (CLOSED with no failure
            counted, DISABLED), else -1.
        reject_until: while OPEN, the time the open period ends (calls before it are rejected); else ``-inf``.

    Other attributes (read under the driver's lock): ``state``, ``epoch``, ``calls`` (outcomes recorded since the
    last transition), ``failed`` (failures among them), ``failures`` (consecutive failures in CLOSED; failed probes
    in HALF_OPEN), ``successes`` (successful probes in HALF_OPEN), ``probes`` (permits granted and not returned in
    this HALF_OPEN period), ``open_until``, ``half_open_since``, ``openings`` (consecutive openings since the last
    clean close) and ``changes`` (transitions not yet published; drained with :meth:`take_changes`).
    """

    __slots__ = (
        "_random",
        "calls",
        "changes",
        "epoch",
        "failed",
        "failures",
        "fast_epoch",
        "half_open_since",
        "last_open_duration",
        "open_until",
        "openings",
        "probes",
        "quiet_epoch",
        "reject_until",
        "settings",
        "state",
        "successes",
    )

    def __init__(self, settings: BreakerSettings, *, now: float, random: Callable[[], float] = _no_random) -> None:
        self.settings = settings
        self._random = random
        self.state = _CLOSED
        self.epoch = 0
        self.fast_epoch = 0
        self.quiet_epoch = 0
        self.reject_until = -math.inf
        self.calls = 0
        self.failed = 0
        self.failures = 0
        self.successes = 0
        self.probes = 0
        self.open_until = -math.inf
        self.half_open_since = now
        self.openings = 0
        self.last_open_duration = 0.0
        self.changes: list[Transition] = []

    # --- transitions ---------------------------------------------------------------------------------------------

    def _open_duration(self) -> float:
        timeout = self.settings.reset_timeout
        if isinstance(timeout, int | float):
            return float(timeout)
        duration = float(timeout.delay(self.openings, self.last_open_duration, self._random))
        return duration if duration >= 0.0 else 0.0  # also maps NaN to 0.0

    def _move(self, to: CircuitState, now: float) -> None:
        """Enter ``to`` (a new epoch even when ``to`` is the current state) and queue the transition."""
        # Readers without the lock look at fast_epoch/quiet_epoch/reject_until only: clear them before the epoch
        # changes and set them after, so a racing reader sees the old epoch or the new state, never a mixture.
        self.fast_epoch = -1
        self.quiet_epoch = -1
        self.reject_until = -math.inf
        before = self.state
        self.epoch += 1
        self.state = to
        self.calls = 0
        self.failed = 0
        self.failures = 0
        self.successes = 0
        self.probes = 0
        if to is _OPEN:
            duration = self._open_duration()
            self.openings += 1
            self.last_open_duration = duration
            self.open_until = now + duration
            self.reject_until = self.open_until
        elif to is _HALF_OPEN:
            self.half_open_since = now
        elif to is _CLOSED:
            self.openings = 0
            self.last_open_duration = 0.0
        if to is not _OPEN:
            self.open_until = -math.inf
        if before is not to:
            self.changes.append((before, to, now))
        if to is _CLOSED or to is _DISABLED or to is _METRICS_ONLY:
            self.fast_epoch = self.epoch
        if to is _CLOSED or to is _DISABLED:
            self.quiet_epoch = self.epoch

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
        self._move(CircuitState(state), now)

    # --- permits -------------------------------------------------------------------------------------------------

    def acquire(self, now: float) -> Permit | None:
        """Grant a permit (the current epoch) or refuse (``None``); may move OPEN → HALF_OPEN or HALF_OPEN → OPEN."""
        state = self.state
        if state is _OPEN:
            if now < self.open_until:
                return None
            self._move(_HALF_OPEN, now)
            self.probes = 1
            return self.epoch
        if state is _HALF_OPEN:
            settings = self.settings
            if self.probes < settings.half_open_max_calls:
                self.probes += 1
                return self.epoch
            wait = settings.max_half_open_wait
            if wait is not None and now - self.half_open_since >= wait:
                self._move(_OPEN, now)
            return None
        if state is _FORCED_OPEN:
            return None
        return self.epoch

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
        if permit != self.epoch:
            return
        state = self.state
        if state is _CLOSED or state is _METRICS_ONLY:
            self.calls += 1
            if self.failures:
                self.failures = 0
                if state is _CLOSED:
                    self.quiet_epoch = self.epoch
        elif state is _HALF_OPEN:
            self.calls += 1
            self.successes += 1
            if self.successes >= self.settings.success_threshold:
                self._move(_CLOSED, now)
        elif state is _DISABLED:
            self.calls += 1

    def failure(self, permit: Permit, now: float, duration: float = 0.0) -> None:
        """Record a failed call (``duration`` in seconds); ignored when ``permit`` is stale."""
        if permit != self.epoch:
            return
        state = self.state
        if state is _CLOSED or state is _METRICS_ONLY:
            self.calls += 1
            self.failed += 1
            self.quiet_epoch = -1
            self.failures += 1
            if state is _CLOSED and self.failures >= self.settings.failure_threshold:
                self._move(_OPEN, now)
        elif state is _HALF_OPEN:
            self.calls += 1
            self.failed += 1
            self.failures += 1
            self._move(_OPEN, now)
        elif state is _DISABLED:
            self.calls += 1
            self.failed += 1

    def release(self, permit: Permit) -> None:
        """A call ended without an outcome (cancelled, excluded exception): return its permit."""
        if permit == self.epoch and self.state is _HALF_OPEN and self.probes > 0:
            self.probes -= 1
