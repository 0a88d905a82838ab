"""Settings, states and statistics of the circuit breaker: plain data shared by its pure state machine
(``_breaker_state.py``), its drivers (``_breaker.py``) and the registry.

Validation follows the package rule: invalid configuration raises ``ValueError`` (or ``TypeError``) naming the
parameter, at construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, TypeAlias, runtime_checkable

from ._clock import Clock
from ._config import check_int, check_percent, to_seconds, to_seconds_or_none
from ._types import ExceptionSpec
from ._windows import CountWindow, TimeWindow, Window

__all__ = [
    "BreakerSettings",
    "CircuitBreakerConfig",
    "CircuitState",
    "CircuitStatistics",
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
        DISABLED: every call passes; outcomes are only counted for statistics, never judged.
        METRICS_ONLY: calls pass and outcomes are recorded and reported, but the breaker never trips.
        FORCED_OPEN: every call is rejected until the breaker is reset or moved to another state.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLED = "disabled"
    METRICS_ONLY = "metrics_only"
    FORCED_OPEN = "forced_open"


class Transition(NamedTuple):
    """A transition for the driver to log and emit.

    Attributes:
        before: the state left.
        after: the state entered.
        at: ``now`` when it happened (seconds on the breaker's clock).
        reason: ``"consecutive_failures"``, ``"failure_rate"``, ``"slow_call_rate"``, ``"reset_timeout"`` (OPEN →
            HALF_OPEN), ``"probes_failed"``, ``"probes_succeeded"``, ``"max_half_open_wait"`` or ``"manual"``.
        rate: for ``"failure_rate"``/``"slow_call_rate"``, the rate in percent that reached the threshold (over the
            window; for probes, over the HALF_OPEN window of ``half_open_max_calls``), else ``None``.
    """

    before: CircuitState
    after: CircuitState
    at: float
    reason: str
    rate: float | None = None


@runtime_checkable
class OpenDurationSchedule(Protocol):
    """Anything with the ``delay`` method of :class:`stalwart.Backoff`, used as ``reset_timeout`` for a backoff of
    the open period on repeated openings.

    ``delay(n, previous, random)`` returns the open period in seconds for the ``n``-th consecutive opening (``n`` is
    0 for the first opening after a clean close), ``previous`` being the previous open period (0.0 before the
    first) and ``random`` a ``() -> float`` in [0, 1) for jitter. A negative or NaN delay means no open period; an
    infinite one (or an int beyond float range) means practically forever (``sys.float_info.max`` seconds).
    """

    def delay(self, n: int, previous: float, random: Callable[[], float]) -> float: ...


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The validated settings of a :class:`BreakerMachine` (durations normalised to float seconds).

    Attributes:
        failure_threshold: consecutive failures that open a CLOSED breaker (``int`` ≥ 1, default 5; consecutive
            model).
        success_threshold: successful probes that close a HALF_OPEN breaker (``int`` ≥ 1, default 3, at most
            ``half_open_max_calls``; consecutive model).
        reset_timeout: the open period in seconds (``float`` ≥ 0, default 30.0), or an
            :class:`OpenDurationSchedule` (a ``Backoff``) giving a longer period on repeated openings.
        half_open_max_calls: probes admitted per HALF_OPEN period (``int`` ≥ 1, default 3).
        max_half_open_wait: seconds a HALF_OPEN period may last once all its probes are taken before the breaker
            goes back to OPEN (bounds a hung probe); ``None`` (default) waits for the probes.
        window: ``None`` (consecutive model), or a ``CountWindow``/``TimeWindow`` (rate models).
        failure_rate_threshold: percent in (0, 100]; a rate at or above it opens the breaker (default 50.0).
        minimum_calls: calls the window needs before it judges (``int`` ≥ 1, default 100; a ``CountWindow``
            smaller than that judges once it is full).
        slow_call_duration: seconds from which a call counts as slow (rate models only), or ``None``.
        slow_call_rate_threshold: percent in (0, 100] of slow calls that opens the breaker (default 100.0).

    Raises:
        TypeError: a parameter has the wrong type.
        ValueError: a parameter is out of range, ``success_threshold > half_open_max_calls``, or
            ``slow_call_duration`` without a ``window``.
    """

    failure_threshold: int = 5
    success_threshold: int = 3
    reset_timeout: float | OpenDurationSchedule = 30.0
    half_open_max_calls: int = 3
    max_half_open_wait: float | None = None
    window: Window | None = None
    failure_rate_threshold: float = 50.0
    minimum_calls: int = 100
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float = 100.0

    def __post_init__(self) -> None:
        check_int(self.failure_threshold, "failure_threshold", minimum=1)
        check_int(self.success_threshold, "success_threshold", minimum=1)
        check_int(self.half_open_max_calls, "half_open_max_calls", minimum=1)
        check_int(self.minimum_calls, "minimum_calls", minimum=1)
        if self.success_threshold > self.half_open_max_calls:
            raise ValueError(
                f"success_threshold ({self.success_threshold}) must not exceed half_open_max_calls "
                f"({self.half_open_max_calls}): the breaker could never close"
            )
        if not isinstance(self.reset_timeout, OpenDurationSchedule):
            object.__setattr__(self, "reset_timeout", to_seconds(self.reset_timeout, "reset_timeout"))
        wait = to_seconds_or_none(self.max_half_open_wait, "max_half_open_wait", allow_zero=False)
        object.__setattr__(self, "max_half_open_wait", wait)
        if self.window is not None and not isinstance(self.window, CountWindow | TimeWindow):
            raise TypeError(f"window must be None, a CountWindow or a TimeWindow, got {self.window!r}")
        object.__setattr__(
            self, "failure_rate_threshold", check_percent(self.failure_rate_threshold, "failure_rate_threshold")
        )
        object.__setattr__(
            self, "slow_call_rate_threshold", check_percent(self.slow_call_rate_threshold, "slow_call_rate_threshold")
        )
        slow = to_seconds_or_none(self.slow_call_duration, "slow_call_duration", allow_zero=False)
        if slow is not None and self.window is None:
            raise ValueError("slow_call_duration needs a window (CountWindow or TimeWindow): slow calls are a rate")
        object.__setattr__(self, "slow_call_duration", slow)

    @property
    def judging_calls(self) -> int:
        """The calls a window needs before it judges: ``minimum_calls``, capped by a ``CountWindow``'s size."""
        window = self.window
        if isinstance(window, CountWindow):
            return min(self.minimum_calls, window.size)
        return self.minimum_calls


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """Every setting of a :class:`CircuitBreaker` but its name, normalised (durations as float seconds).

    The field names are the constructor's parameter names; the registry compares them to detect a conflicting
    configuration. Predicates compare by identity.
    """

    failure_threshold: int
    success_threshold: int
    reset_timeout: float | OpenDurationSchedule
    half_open_max_calls: int
    window: Window | None
    failure_rate_threshold: float
    minimum_calls: int
    slow_call_duration: float | None
    slow_call_rate_threshold: float
    max_half_open_wait: float | None
    on: ExceptionSpec
    exclude: ExceptionSpec
    on_result: Callable[[Any], bool] | None
    critical: bool
    store: object | None
    clock: Clock
    random: Callable[[], float]


@dataclass(frozen=True, slots=True)
class CircuitStatistics:
    """A consistent snapshot of a breaker (``CircuitBreaker.statistics()``).

    Attributes:
        name: the breaker's name.
        state: the current :class:`CircuitState`.
        calls: outcomes recorded since the last transition (consecutive model; HALF_OPEN probes of any model) or
            in the window (rate models; calls in progress for ``slow_call_duration`` or more included).
        failure_count: failures among ``calls``.
        success_count: successes among ``calls``.
        slow_call_count: slow calls among ``calls`` (rate models with ``slow_call_duration``), else 0.
        consecutive_failures: the current run of failures (consecutive model, CLOSED/METRICS_ONLY), else 0.
        failure_rate: percent of ``calls`` that failed, or ``None`` (consecutive model, or fewer calls than the
            window needs to judge).
        slow_call_rate: percent of ``calls`` that were slow, or ``None`` (slow calls not tracked, too few calls).
        retry_after: seconds until a probe is admitted while OPEN, else ``None``.
        half_open_probes: permits held by probes in the current HALF_OPEN period.
        openings: consecutive openings since the last clean close (drives the open-period backoff).
    """

    name: str
    state: CircuitState
    calls: int
    failure_count: int
    success_count: int
    slow_call_count: int
    consecutive_failures: int
    failure_rate: float | None
    slow_call_rate: float | None
    retry_after: float | None
    half_open_probes: int
    openings: int
