"""``AdaptiveTimeout``: a per-attempt timeout that follows the observed latency.

The seed's adaptive timeout (15.2): keep the last ``window`` (100) response times; once ``min_samples`` (10) exist,
the timeout is ``percentile`` (the 99th) of them times ``multiplier`` (1.5), clamped to ``[minimum, maximum]``
(1 s, 30 s); before that it is ``initial`` (5 s). Unlike the seed's, recording a sample does not sort the window:
the samples are kept twice, in arrival order (a ring, to know which one leaves) and in sorted order (updated with
a binary search, ``bisect``), so a sample costs O(log n) comparisons and reading the quantile is one index.

Used as a policy it times the calls it wraps and records their durations; a call that its own timeout cancels is
recorded as a *censored* sample at the timeout value, so the estimate grows when the service slows down (each
censored sample above the quantile raises the timeout by ``multiplier``).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, insort
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from ._clock import SYSTEM_CLOCK, Clock
from ._config import check_int, to_seconds
from ._deadline import current_deadline, enter_async_scope, enter_sync_scope, exit_sync_scope
from ._exceptions import DeadlineExceeded
from ._policy import Policy

__all__ = ["AdaptiveTimeout"]

P = ParamSpec("P")
T = TypeVar("T")

_INF = math.inf


class AdaptiveTimeout(Policy):
    """A timeout set from a latency quantile: ``clamp(quantile(last window samples) x multiplier)``.

    The quantile is the nearest-rank ``percentile`` of the last ``window`` samples (with 100 samples and
    ``percentile=0.99``, the second largest). Until ``min_samples`` samples exist the timeout is ``initial``.

    Use it as a per-attempt timeout policy (the innermost policy of ``Pipeline.standard``, as
    ``attempt_timeout=``): each call runs under a :class:`~stalwart.Timeout` of the current value, with the same
    semantics (async calls are cancelled and raise :class:`~stalwart.DeadlineExceeded`; sync calls get the ambient
    deadline and are not pre-empted), and its duration is recorded: a success at its measured duration, a call
    cancelled by this timeout at the timeout value (a censored sample). Calls that fail otherwise, are cancelled
    from outside or end at a tighter ambient deadline are not recorded: their duration says little about the
    service's latency. Or use it by hand: :meth:`record` durations and read :attr:`timeout`.

    With the defaults, after a step up of the latency to 3x its previous level (say from ``L`` to ``3L``, with a
    timeout of ``1.5L``), the first calls time out and are recorded at the timeout, each pair of them raising the
    timeout 1.5x: after 4 such samples it exceeds ``3L`` (``1.5**3 L``) and calls succeed again; after 6 it is
    ``4.5L``, 1.5x the new latency. After a step back down it returns to ``1.5L`` once at most one of the last
    100 samples is slow, i.e. within 99 samples.

    Thread-safe: samples may be recorded from any thread.

    Args:
        initial: the timeout before ``min_samples`` samples exist, seconds (default 5.0, the seed's); clamped to
            ``[minimum, maximum]``.
        minimum: the lower clamp, seconds > 0 (default 1.0).
        maximum: the upper clamp, seconds >= ``minimum`` (default 30.0).
        percentile: the quantile, a fraction in (0, 1] (default 0.99).
        multiplier: the factor applied to the quantile, > 0 (default 1.5).
        window: how many recent samples are kept, an ``int`` >= 1 (default 100).
        min_samples: samples needed before adapting, ``1 <= min_samples <= window`` (default 10).
        clock: the monotonic clock used to time calls (default: the system clock).

    Raises:
        ValueError: a parameter outside its range (the message names it).
        TypeError: a parameter of the wrong type.
    """

    __slots__ = (
        "_clock",
        "_initial",
        "_lock",
        "_maximum",
        "_min_samples",
        "_minimum",
        "_multiplier",
        "_next",
        "_percentile",
        "_ring",
        "_sorted",
        "_window",
    )

    def __init__(
        self,
        *,
        initial: float | timedelta = 5.0,
        minimum: float | timedelta = 1.0,
        maximum: float | timedelta = 30.0,
        percentile: float = 0.99,
        multiplier: float = 1.5,
        window: int = 100,
        min_samples: int = 10,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._minimum = to_seconds(minimum, "minimum", allow_zero=False)
        self._maximum = to_seconds(maximum, "maximum", allow_zero=False)
        if self._maximum < self._minimum:
            raise ValueError(f"maximum must be >= minimum, got maximum={self._maximum!r} < minimum={self._minimum!r}")
        self._initial = min(self._maximum, max(self._minimum, to_seconds(initial, "initial", allow_zero=False)))
        self._percentile = _check_fraction(percentile, "percentile")
        self._multiplier = _check_positive(multiplier, "multiplier")
        self._window = check_int(window, "window", minimum=1)
        self._min_samples = check_int(min_samples, "min_samples", minimum=1)
        if self._min_samples > self._window:
            raise ValueError(f"min_samples must be <= window, got {min_samples!r} > {window!r}")
        self._clock = clock
        self._ring: list[float] = []
        self._sorted: list[float] = []
        self._next = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"AdaptiveTimeout(initial={self._initial!r}, minimum={self._minimum!r}, maximum={self._maximum!r}, "
            f"percentile={self._percentile!r}, multiplier={self._multiplier!r}, window={self._window!r}, "
            f"min_samples={self._min_samples!r})"
        )

    @property
    def samples(self) -> int:
        """How many samples the window holds (at most ``window``)."""
        return len(self._ring)

    @property
    def timeout(self) -> float:
        """The current timeout in seconds, clamped to ``[minimum, maximum]`` and then to the ambient deadline."""
        limit = self._limit()
        ambient = current_deadline()
        if ambient is not None:
            left = ambient.remaining()
            if left < limit:
                return left
        return limit

    def _limit(self) -> float:
        """The current timeout, not clamped by the ambient deadline."""
        with self._lock:
            ordered = self._sorted
            count = len(ordered)
            if count < self._min_samples:
                return self._initial
            rank = math.ceil(self._percentile * count) - 1  # nearest rank, 0-based
            quantile = ordered[rank if rank > 0 else 0]
        value = quantile * self._multiplier
        if value < self._minimum:
            return self._minimum
        if value > self._maximum:
            return self._maximum
        return value

    def record(self, seconds: float) -> None:
        """Add one observed duration (seconds, finite and >= 0); the oldest leaves once ``window`` are held.

        Raises:
            ValueError: ``seconds`` is negative, NaN or infinite.
        """
        if not 0.0 <= seconds < _INF:
            raise ValueError(f"seconds must be a finite duration >= 0, got {seconds!r}")
        with self._lock:
            ring = self._ring
            ordered = self._sorted
            if len(ring) < self._window:
                ring.append(seconds)
            else:
                index = self._next
                del ordered[bisect_left(ordered, ring[index])]
                ring[index] = seconds
                index += 1
                self._next = 0 if index == self._window else index
            insort(ordered, seconds)

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` under the current timeout and record its duration.

        Raises:
            DeadlineExceeded: as :meth:`stalwart.Timeout.run`.
        """
        clock = self._clock
        limit = self._limit()
        scope = enter_async_scope(limit, clock, fail_fast=True)
        start = clock.monotonic()
        if scope is None:  # a tighter ambient deadline, enforced by an enclosing scope
            result = await fn(*args, **kwargs)
            self.record(clock.monotonic() - start)
            return result
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            try:
                scope.exit(exc)
            except DeadlineExceeded:
                if scope.own:
                    self.record(limit)  # censored: the call took at least this long
                raise
            raise
        scope.exit(None)
        self.record(clock.monotonic() - start)
        return result

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` with the ambient deadline set to the current timeout; record its duration.

        Sync code is not pre-empted: a late result is returned (and recorded at its full duration).

        Raises:
            DeadlineExceeded: the ambient deadline had already passed (the call was not started).
        """
        clock = self._clock
        token = enter_sync_scope(self._limit(), clock)
        start = clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        finally:
            exit_sync_scope(token)
        self.record(clock.monotonic() - start)
        return result


def _check_fraction(value: float, parameter: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{parameter} must be a fraction in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise ValueError(f"{parameter} must be a fraction in (0, 1], got {value!r}")
    return float(value)


def _check_positive(value: float, parameter: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{parameter} must be a number, got {value!r}")
    if not 0.0 < value < _INF:  # also refuses NaN
        raise ValueError(f"{parameter} must be finite and > 0, got {value!r}")
    return float(value)
