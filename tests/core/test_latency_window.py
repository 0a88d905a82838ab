"""The latency windows behind AdaptiveTimeout (pure): checked against a brute-force sorting model."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart._latency_window import (
    EXACT_LIMIT,
    PRECISION,
    HistogramWindow,
    SortedWindow,
    bucket_bounds,
    bucket_of,
    new_window,
)


def nearest_rank(samples: list[float], size: int, percentile: float) -> float:
    """The seed's rule the slow way: sort the last ``size`` samples, take the nearest rank."""
    kept = sorted(samples[-size:])
    return kept[max(0, math.ceil(percentile * len(kept)) - 1)]


durations = st.one_of(
    st.floats(0.0, 100.0),
    st.floats(0.0, 1e-3),
    st.sampled_from([0.0, 5e-324, 1e-9, 0.1, 0.25, 2.0, 3.0, 1e6]),
)
percentiles = st.one_of(st.sampled_from([0.5, 0.9, 0.99, 1.0]), st.floats(0.001, 1.0))


@given(st.integers(1, 40), percentiles, st.lists(durations, min_size=1, max_size=150))
def test_sorted_window_is_exact(size: int, percentile: float, samples: list[float]) -> None:
    window = SortedWindow(size, percentile)
    for i, sample in enumerate(samples):
        window.add(sample)
        assert window.value == nearest_rank(samples[: i + 1], size, percentile)
        assert window.count == min(size, i + 1)
    assert window.samples() == samples[-size:]


@given(st.integers(1, 40), percentiles, st.lists(durations, min_size=1, max_size=150))
def test_histogram_window_is_within_a_sixteenth(size: int, percentile: float, samples: list[float]) -> None:
    window = HistogramWindow(size, percentile)
    for i, sample in enumerate(samples):
        window.add(sample)
        exact = nearest_rank(samples[: i + 1], size, percentile)
        assert window.value is not None
        assert abs(window.value - exact) <= exact / PRECISION + 1e-12 * exact
        assert window.count == min(size, i + 1)
    assert window.samples() == samples[-size:]


@given(
    st.integers(1, 40),
    percentiles,
    st.lists(st.sampled_from([0.0, 0.001, 0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 6.75, 9.0]), min_size=1, max_size=150),
)
def test_histogram_window_is_exact_when_a_buckets_samples_are_equal(
    size: int, percentile: float, samples: list[float]
) -> None:
    """Up to the rounding of the bucket's running sum (0.1 + 0.1 + 0.1 is not 0.3)."""
    window = HistogramWindow(size, percentile)
    for i, sample in enumerate(samples):
        window.add(sample)
        assert window.value == pytest.approx(nearest_rank(samples[: i + 1], size, percentile), rel=1e-12)


@given(st.one_of(st.just(0.0), st.floats(min_value=2.3e-308, max_value=1e300)))  # zero and normal floats
def test_bucket_bounds_hold_the_sample(seconds: float) -> None:
    low, high = bucket_bounds(bucket_of(seconds))
    if seconds == 0.0:
        assert (low, high) == (0.0, 0.0)
    else:
        assert low <= seconds < high
        assert high - low <= low / PRECISION


@given(st.floats(min_value=0.0, max_value=1e300), st.floats(min_value=0.0, max_value=1e300))
def test_buckets_are_ordered_like_their_samples(a: float, b: float) -> None:
    if a <= b:
        assert bucket_of(a) <= bucket_of(b)


def test_new_window_is_exact_up_to_the_limit() -> None:
    assert isinstance(new_window(100, 0.99), SortedWindow)
    assert isinstance(new_window(EXACT_LIMIT, 0.99), SortedWindow)
    assert isinstance(new_window(EXACT_LIMIT + 1, 0.99), HistogramWindow)


@pytest.mark.parametrize("kind", [SortedWindow, HistogramWindow])
def test_empty_window(kind: type[SortedWindow | HistogramWindow]) -> None:
    window = kind(10, 0.99)
    assert window.value is None
    assert window.count == 0
    assert window.samples() == []


def test_histogram_memory_does_not_grow_with_the_distinct_values() -> None:
    window = HistogramWindow(1000, 0.99)
    for i in range(20_000):
        window.add(0.1 + (i % 997) * 1e-6)  # 997 distinct values, all within a few buckets
    assert window.count == 1000
    assert len(window._counts) <= 2
    assert len(window._occupied) == len(window._counts)
