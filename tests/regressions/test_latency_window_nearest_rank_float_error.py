"""Regression: the "exact" nearest-rank quantile took the next sample up for many percentiles.

What was wrong: both windows computed the rank as ``ceil(percentile x count) - 1`` in binary floating point. When
the decimal product is a whole number the binary one often lands just above it (``0.55 x 100 =
55.00000000000001``, ``0.07 x 100 = 7.000000000000001``, ``0.54 x 450``...), and its ceiling is one rank too high:
``AdaptiveTimeout(percentile=0.55, window=100)`` used the 56th smallest sample instead of the 55th, although the
docs call the window's quantile exact (1,316 of the 40 million (percentile in steps of 0.0001, count up to 4096)
pairs). The rank is now computed as for the decimal percentile written; the test checks it against exact rational
arithmetic, for both estimators (over a sample of percentiles: the full grid takes minutes).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest

from stalwart._latency_window import HistogramWindow, SortedWindow


def exact_rank(percentile: float, count: int) -> int:
    """The nearest rank (0-based) of the decimal ``percentile`` as written, in exact arithmetic."""
    return max(0, math.ceil(Fraction(Decimal(repr(percentile))) * count) - 1)


def sample(rank: int) -> float:
    return 2.0 ** (rank / 8)


CASES = [(0.55, 100), (0.07, 100), (0.54, 450), (0.545, 200), (0.14, 50), (0.99, 100), (0.5, 7), (1.0, 100)]


@pytest.mark.parametrize("window_class", [SortedWindow, HistogramWindow])
@pytest.mark.parametrize(("percentile", "count"), CASES)
def test_the_quantile_is_the_nearest_rank_of_the_decimal_percentile(
    window_class: type[SortedWindow] | type[HistogramWindow], percentile: float, count: int
) -> None:
    window = window_class(count, percentile)
    for rank in range(count):  # samples 2 ** (rank / 8): each in a histogram bucket of its own, so both are exact
        window.add(sample(rank))
    assert window.value == sample(exact_rank(percentile, count))


def test_every_rank_agrees_with_exact_arithmetic() -> None:
    for step in range(1, 10_000, 97):
        percentile = step / 10_000
        window = SortedWindow(4096, percentile)
        for count in range(1, 4097):
            window.add(float(count - 1))
            assert window.value == exact_rank(percentile, count), (percentile, count)
