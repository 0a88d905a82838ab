"""A latency quantile over a sliding window of samples, in bounded time per sample and bounded memory (pure).

The seed's adaptive timeout sorts its whole sample list on every record. Here a sample never triggers a sort: the
last ``size`` samples are kept in a ring (to know which one leaves) and an estimator is updated incrementally. Two
estimators, chosen by the window size (:func:`new_window`):

* :class:`SortedWindow` (``size <= 4096``, the default window is 100): the samples are also kept in sorted order,
  updated with a binary search (``bisect``: O(log n) comparisons, and a ``memmove`` of at most 32 KiB of pointers);
  the quantile is one index and **exact**. In CPython this is the fastest structure for such windows (both steps
  run in C): about 0.3 µs per sample at 100 samples.
* :class:`HistogramWindow` (larger windows): a **log-bucket histogram** with ``PRECISION`` (16) buckets per power
  of two, so a bucket spans at most 1/16 (6.25 %) of its lower edge (HdrHistogram's layout). The nearest-rank
  quantile is tracked by a pointer to the bucket holding it and the count of samples below that bucket; adding a
  sample and removing the oldest each move the rank-``r`` sample by at most one place in sorted order, so the
  pointer moves at most one occupied bucket per change. A sample costs O(1) dictionary operations (plus a binary
  search in the short list of occupied buckets when one becomes occupied or empty), about 1 µs whatever the window
  size, where the sorted list's ``memmove`` grows with it (about 3 µs at 10,000 samples, 18 µs at 100,000). The
  value reported is the **mean of the window's samples in the quantile's bucket** (each bucket keeps the sum of
  its samples): it lies in the same bucket as the exact nearest-rank sample, so it is within 1/16 of it, and it
  equals it (up to the rounding of the running sum) when that bucket's samples are equal.

Both use the seed's nearest rank: ``rank = ceil(percentile x count) - 1`` (0-based; the 0.99 quantile of 100
samples is the second largest), computed as for the decimal percentile written (``0.55 x 100`` is 55, not the 56
that the binary product's ceiling gives). Nothing here reads a clock, sleeps or locks: callers serialise access
(``AdaptiveTimeout`` holds a lock).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from typing import Protocol

__all__ = [
    "EXACT_LIMIT",
    "PRECISION",
    "HistogramWindow",
    "LatencyWindow",
    "SortedWindow",
    "bucket_bounds",
    "bucket_of",
    "new_window",
]

PRECISION = 16
"""Buckets per power of two: a bucket's width is at most 1/16 of its lower edge."""

EXACT_LIMIT = 4096
"""The largest window kept exactly (:class:`SortedWindow`); larger windows use :class:`HistogramWindow`."""

_TWICE_PRECISION = 2 * PRECISION
_ZERO = -(1 << 30)  # the bucket of 0.0, below every positive value's (frexp exponents are >= -1073)
_frexp = math.frexp
_ceil = math.ceil
# ``percentile x count`` in binary floating point lands just above a whole number when the decimal product is one
# (0.55 x 100 = 55.00000000000001, 0.07 x 100 = 7.000000000000001): its ceiling, one rank too high, was the next
# sample up. Shrinking the product by 1e-15 (relative) undoes that rounding (a few ulps) and cannot cross a real
# fractional part (for a percentile of up to 6 decimals and counts up to 10**6, one is at least 1e-12 relative).
_RANK_SHRINK = 1.0 - 1e-15


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a finite sample ``>= 0``: ``exponent x 16 + sixteenth of the mantissa``."""
    if seconds <= 0.0:
        return _ZERO
    mantissa, exponent = _frexp(seconds)  # seconds = mantissa x 2**exponent, 0.5 <= mantissa < 1
    return exponent * PRECISION + int((mantissa - 0.5) * (2 * PRECISION))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """``(low, high)``: the samples of ``bucket`` lie in ``[low, high)`` (``(0.0, 0.0)`` for the zero bucket)."""
    if bucket == _ZERO:
        return (0.0, 0.0)
    exponent, sub = divmod(bucket, PRECISION)
    return (
        math.ldexp(0.5 + sub / (2 * PRECISION), exponent),
        math.ldexp(0.5 + (sub + 1) / (2 * PRECISION), exponent),
    )


class LatencyWindow(Protocol):
    """What ``AdaptiveTimeout`` needs of a window: ``add``, the current ``value`` and the sample ``count``."""

    count: int
    value: float | None

    def add(self, seconds: float) -> None: ...

    def samples(self) -> list[float]: ...


def new_window(size: int, percentile: float) -> LatencyWindow:
    """The estimator for a window of ``size`` samples: exact up to :data:`EXACT_LIMIT`, a histogram beyond."""
    if size <= EXACT_LIMIT:
        return SortedWindow(size, percentile)
    return HistogramWindow(size, percentile)


class SortedWindow:
    """The exact nearest-rank ``percentile`` of the last ``size`` samples (a ring and a sorted list).

    Args:
        size: samples kept, ``int >= 1``.
        percentile: the quantile, a fraction in (0, 1].

    Attributes:
        count: samples held (at most ``size``).
        value: the quantile in seconds, or ``None`` while the window is empty.
    """

    __slots__ = ("_next", "_percentile", "_rank", "_rank_scale", "_ring", "_size", "_sorted", "count", "value")

    def __init__(self, size: int, percentile: float) -> None:
        self._size = size
        self._percentile = percentile
        self._rank_scale = percentile * _RANK_SHRINK
        self._ring: list[float] = []
        self._sorted: list[float] = []
        self._next = 0
        self._rank = 0
        self.count = 0
        self.value: float | None = None

    def add(self, seconds: float) -> None:
        """Add a sample (finite float seconds >= 0, not checked here); the oldest leaves once ``size`` are held."""
        ordered = self._sorted
        if self.count == self._size:
            ring = self._ring
            index = self._next
            del ordered[bisect_left(ordered, ring[index])]
            ring[index] = seconds
            index += 1
            self._next = 0 if index == self._size else index
        else:
            self._ring.append(seconds)
            self.count = count = self.count + 1
            rank = _ceil(self._rank_scale * count) - 1
            self._rank = rank if rank > 0 else 0
        insort(ordered, seconds)
        self.value = ordered[self._rank]

    def samples(self) -> list[float]:
        """The samples held, oldest first (for tests and debugging)."""
        ring = self._ring
        return ring[self._next :] + ring[: self._next]


class HistogramWindow:
    """The nearest-rank ``percentile`` of the last ``size`` samples, estimated within 1/16 (see the module).

    Args:
        size: samples kept, ``int >= 1``.
        percentile: the quantile, a fraction in (0, 1]; the rank is ``ceil(percentile x count) - 1`` (0-based),
            the seed's nearest rank (``0.99`` of 100 samples: the second largest).

    Attributes:
        count: samples held (at most ``size``).
        value: the quantile estimate in seconds, or ``None`` while the window is empty.
    """

    __slots__ = (
        "_below",
        "_buckets",
        "_counts",
        "_next",
        "_occupied",
        "_percentile",
        "_quantile_bucket",
        "_rank",
        "_rank_scale",
        "_ring",
        "_size",
        "_sums",
        "count",
        "value",
    )

    def __init__(self, size: int, percentile: float) -> None:
        self._size = size
        self._percentile = percentile
        self._rank_scale = percentile * _RANK_SHRINK
        self._ring = array("d")
        self._buckets: list[int] = []  # the bucket of each sample in the ring
        self._next = 0
        self._counts: dict[int, int] = {}
        self._sums: dict[int, float] = {}
        self._occupied: list[int] = []  # the buckets with samples, ascending
        self._quantile_bucket = 0
        self._below = 0  # samples in buckets below the quantile's bucket
        self._rank = 0
        self.count = 0
        self.value: float | None = None

    def add(self, seconds: float) -> None:
        """Add a sample (finite float seconds >= 0, not checked here); the oldest leaves once ``size`` are held."""
        # The hot path of AdaptiveTimeout.record(): bucket_of() and the count updates are written out inline.
        if seconds > 0.0:
            mantissa, exponent = _frexp(seconds)
            bucket = exponent * PRECISION + int((mantissa - 0.5) * _TWICE_PRECISION)
        else:
            bucket = _ZERO
        counts = self._counts
        sums = self._sums
        quantile_bucket = self._quantile_bucket
        if self.count == self._size:
            ring = self._ring
            index = self._next
            old = ring[index]
            ring[index] = seconds
            buckets = self._buckets
            old_bucket = buckets[index]
            buckets[index] = bucket
            index += 1
            self._next = 0 if index == self._size else index
            if old_bucket == bucket:  # the counts do not change: only that bucket's mean may
                sums[bucket] += seconds - old
                if bucket == quantile_bucket:
                    self.value = sums[bucket] / counts[bucket]
                return
            held = counts[old_bucket] - 1
            if held:
                counts[old_bucket] = held
                sums[old_bucket] -= old
            else:
                del counts[old_bucket]
                del sums[old_bucket]
                occupied = self._occupied
                del occupied[bisect_left(occupied, old_bucket)]
            if old_bucket < quantile_bucket:
                self._below -= 1
        else:
            self._ring.append(seconds)
            self._buckets.append(bucket)
            self.count = count = self.count + 1
            rank = _ceil(self._rank_scale * count) - 1
            self._rank = rank if rank > 0 else 0
            if count == 1:
                counts[bucket] = 1
                sums[bucket] = seconds
                self._occupied.append(bucket)
                self._quantile_bucket = bucket
                self._below = 0
                self.value = seconds
                return
        held = counts.get(bucket, 0)
        if held:
            counts[bucket] = held + 1
            sums[bucket] += seconds
        else:
            counts[bucket] = 1
            sums[bucket] = seconds
            insort(self._occupied, bucket)
        if bucket < quantile_bucket:
            self._below += 1
        # Move the quantile pointer to the bucket holding the rank-r sample (at most one step per change).
        rank = self._rank
        below = self._below
        if rank < below:
            occupied = self._occupied
            while rank < below:
                quantile_bucket = occupied[bisect_left(occupied, quantile_bucket) - 1]
                below -= counts[quantile_bucket]
        else:
            held = counts.get(quantile_bucket, 0)
            if rank >= below + held:
                occupied = self._occupied
                while rank >= below + held:
                    below += held
                    quantile_bucket = occupied[bisect_right(occupied, quantile_bucket)]
                    held = counts[quantile_bucket]
        self._quantile_bucket = quantile_bucket
        self._below = below
        self.value = sums[quantile_bucket] / counts[quantile_bucket]

    def samples(self) -> list[float]:
        """The samples held, oldest first (for tests and debugging)."""
        ring = self._ring
        if self.count < self._size:
            return list(ring)
        return list(ring[self._next :]) + list(ring[: self._next])
