"""Sliding windows of call outcomes for the circuit breaker's rate models (pure: no clock, no lock).

Two window specifications select a model (``CircuitBreaker(window=...)``):

* :class:`CountWindow` ``(size)``: the last ``size`` calls;
* :class:`TimeWindow` ``(seconds)``: the calls of the last ``seconds`` seconds, in one-second buckets.

Each builds an aggregator that keeps running totals (calls, failures, slow calls) and updates them in O(1) per
recorded outcome: the count window keeps the outcomes in a ring buffer and subtracts the outcome it overwrites; the
time window keeps one bucket per second and subtracts each bucket as it leaves the window (subtract-on-evict, as
resilience4j does). Reading the totals is O(1) too, and memory is fixed by the window's size, not by traffic.

An outcome is a small int of flags: :data:`FAILED` and :data:`SLOW` (a slow failure has both).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TypeAlias

from ._config import check_int, to_seconds

__all__ = [
    "FAILED",
    "OK",
    "SLOW",
    "CountAggregator",
    "CountWindow",
    "InFlight",
    "TimeAggregator",
    "TimeWindow",
    "Window",
    "WindowAggregator",
    "rate_exceeded",
]

OK = 0
FAILED = 1
SLOW = 2


@dataclass(frozen=True, slots=True)
class CountWindow:
    """Judge the failure and slow-call rates over the last ``size`` calls (resilience4j's count-based window).

    Args:
        size: the number of most recent calls in the window (``int`` ≥ 1).

    Raises:
        TypeError: ``size`` is not an int.
        ValueError: ``size`` < 1.
    """

    size: int

    def __post_init__(self) -> None:
        check_int(self.size, "size", minimum=1)

    def aggregator(self) -> CountAggregator:
        """A new, empty aggregator for this window."""
        return CountAggregator(self.size)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Judge the failure and slow-call rates over the calls of the last ``seconds`` seconds.

    The window is kept in one-second buckets, so an outcome leaves it between ``seconds - 1`` and ``seconds``
    seconds after it was recorded (resilience4j's time-based window).

    Args:
        seconds: the window's length (``float`` seconds or ``timedelta``, ≥ 1; rounded up to whole seconds).

    Raises:
        TypeError: ``seconds`` is not a number or timedelta.
        ValueError: ``seconds`` is NaN, infinite or below 1.
    """

    seconds: float

    def __post_init__(self) -> None:
        seconds = to_seconds(self.seconds, "seconds", allow_zero=False)
        if seconds < 1.0:
            raise ValueError(f"seconds must be >= 1 (the window has one-second buckets), got {seconds!r}")
        object.__setattr__(self, "seconds", float(math.ceil(seconds)))

    def aggregator(self) -> TimeAggregator:
        """A new, empty aggregator for this window."""
        return TimeAggregator(int(self.seconds))


Window: TypeAlias = CountWindow | TimeWindow


class CountAggregator:
    """Running totals over the last ``size`` outcomes, in a ring buffer.

    Attributes:
        calls: outcomes in the window (at most ``size``).
        failures: failed outcomes in the window.
        slow: slow outcomes in the window.
        judge_from: the calls the window needs before it is judged (set by its owner; default ``size``).
    """

    __slots__ = ("_index", "_ring", "calls", "failures", "judge_from", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.judge_from = size
        self._ring = bytearray(size)
        self._index = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, now: float, outcome: int) -> bool:
        """Add an outcome (``OK``, ``FAILED``, ``SLOW`` or ``FAILED | SLOW``), evicting the oldest when full.

        Returns ``False``: replacing the oldest outcome by a new one never raises a rate by itself (see
        :meth:`TimeAggregator.record`).
        """
        ring = self._ring
        index = self._index
        if self.calls == self.size:
            old = ring[index]
            if old:
                if old & FAILED:
                    self.failures -= 1
                if old & SLOW:
                    self.slow -= 1
        else:
            self.calls += 1
        ring[index] = outcome
        if outcome:
            if outcome & FAILED:
                self.failures += 1
            if outcome & SLOW:
                self.slow += 1
        index += 1
        self._index = 0 if index == self.size else index
        return False

    def add_success(self, now: float) -> bool:
        """Record an ``OK`` outcome (the hot path); return whether the rates must be judged again: only when the
        window has just reached ``judge_from`` calls and holds a failure or slow call (replacing the oldest outcome
        by a success never raises a rate)."""
        index = self._index
        if self.calls == self.size:
            ring = self._ring
            old = ring[index]
            if old:
                ring[index] = OK
                if old & FAILED:
                    self.failures -= 1
                if old & SLOW:
                    self.slow -= 1
            judge = False
        else:  # not full yet: the slot is still OK from the last reset
            self.calls += 1
            judge = self.calls == self.judge_from and bool(self.failures or self.slow)
        index += 1
        self._index = 0 if index == self.size else index
        return judge

    def advance(self, now: float) -> bool:
        """Nothing leaves a count window with time: returns ``False``."""
        return False

    def reset(self) -> None:
        """Forget every outcome."""
        self._ring = bytearray(self.size)
        self._index = self.calls = self.failures = self.slow = 0


class TimeAggregator:
    """Running totals over the outcomes of the last ``seconds`` seconds, in one-second buckets.

    ``now`` is seconds on a monotonic clock; the bucket of an outcome is ``floor(now)``. Time never goes back; an
    outcome reported with an earlier ``now`` than the newest bucket is counted in the newest bucket.

    Attributes:
        calls: outcomes in the window.
        failures: failed outcomes in the window.
        slow: slow outcomes in the window.
        judge_from: the calls the window needs before it is judged (set by its owner; default 1).
    """

    __slots__ = (
        "_calls",
        "_failures",
        "_head_calls",
        "_index",
        "_newest",
        "_next",
        "_slow",
        "calls",
        "failures",
        "judge_from",
        "seconds",
        "slow",
    )

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.judge_from = 1
        self._calls = [0] * seconds
        self._failures = [0] * seconds
        self._slow = [0] * seconds
        self._newest = -(2**62)  # the second of the newest bucket
        self._next = float(self._newest + 1)  # when the next bucket starts
        self._index = 0  # the newest bucket's index: _newest % seconds
        self._head_calls = 0  # the newest bucket's calls, kept out of the list until the next bucket starts
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def advance(self, now: float) -> bool:
        """Evict the buckets older than the window at ``now`` (amortised O(1): each bucket once); return whether
        any outcome left the window."""
        second = math.floor(now)
        newest = self._newest
        if second <= newest:
            return False
        n = self.seconds
        evicted = False
        self._calls[self._index] += self._head_calls
        self._head_calls = 0
        if second - newest >= n:
            if self.calls:
                self.reset()
                evicted = True
        else:
            calls, failures, slow = self._calls, self._failures, self._slow
            for s in range(newest + 1, second + 1):
                i = s % n
                if calls[i]:
                    self.calls -= calls[i]
                    self.failures -= failures[i]
                    self.slow -= slow[i]
                    calls[i] = failures[i] = slow[i] = 0
                    evicted = True
        self._newest = second
        self._next = float(second + 1)
        self._index = second % n
        return evicted

    def record(self, now: float, outcome: int) -> bool:
        """Add an outcome (``OK``, ``FAILED``, ``SLOW`` or ``FAILED | SLOW``) at time ``now``.

        Returns whether older outcomes left the window first: then a rate may have risen even for an ``OK``.
        """
        evicted = self.advance(now) if now >= self._next else False
        i = self._index
        self._head_calls += 1
        self.calls += 1
        if outcome:
            if outcome & FAILED:
                self._failures[i] += 1
                self.failures += 1
            if outcome & SLOW:
                self._slow[i] += 1
                self.slow += 1
        return evicted

    def add_success(self, now: float) -> bool:
        """Record an ``OK`` outcome at ``now`` (the hot path); return whether the rates must be judged again: only
        when older outcomes have just left the window or the window has just reached ``judge_from`` calls, and it
        holds a failure or slow call."""
        evicted = self.advance(now) if now >= self._next else False
        self._head_calls += 1
        self.calls += 1
        return (evicted or self.calls == self.judge_from) and bool(self.failures or self.slow)

    def reset(self) -> None:
        """Forget every outcome."""
        n = self.seconds
        self._calls = [0] * n
        self._failures = [0] * n
        self._slow = [0] * n
        self._head_calls = self.calls = self.failures = self.slow = 0


WindowAggregator: TypeAlias = CountAggregator | TimeAggregator


class InFlight:
    """Calls in progress, so that a call running for ``threshold`` seconds or more counts as slow before it ends.

    Calls are keyed by a ticket (any hashable int) and started in time order. :meth:`promote` moves the calls
    that have been running for ``threshold`` seconds into the *overdue* set; each call is moved at most once and
    the start queue is cleaned lazily, so the cost is amortised O(1) per call.

    Args:
        threshold: the slow-call duration in seconds.
    """

    __slots__ = ("_order", "_overdue", "_pending", "threshold")

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._pending: dict[int, float] = {}
        self._order: deque[tuple[float, int]] = deque()
        self._overdue: set[int] = set()

    @property
    def overdue(self) -> int:
        """How many calls in progress have been running for ``threshold`` seconds or more (as of the last
        :meth:`promote`)."""
        return len(self._overdue)

    def start(self, ticket: int, now: float) -> None:
        """A call started at ``now``."""
        self._pending[ticket] = now
        self._order.append((now, ticket))

    def finish(self, ticket: int) -> int:
        """A call ended: 1 if it was in progress, 2 if it was overdue, 0 if unknown (stale or already ended)."""
        if self._pending.pop(ticket, None) is not None:
            return 1
        if ticket in self._overdue:
            self._overdue.discard(ticket)
            return 2
        return 0

    def promote(self, now: float) -> int:
        """Move the calls running for ``threshold`` seconds or more at ``now`` to the overdue set; return how many
        moved."""
        cutoff = now - self.threshold
        order = self._order
        pending = self._pending
        moved = 0
        while order and order[0][0] <= cutoff:
            ticket = order.popleft()[1]
            if pending.pop(ticket, None) is not None:
                self._overdue.add(ticket)
                moved += 1
        return moved

    def clear(self) -> None:
        """Forget every call (their tickets become unknown)."""
        self._pending.clear()
        self._order.clear()
        self._overdue.clear()


def rate_exceeded(calls: int, count: int, threshold: float) -> bool:
    """Whether ``count`` of ``calls`` is at least ``threshold`` percent (integer-exact when the threshold is)."""
    return calls > 0 and count * 100.0 >= threshold * calls
