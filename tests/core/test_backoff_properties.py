"""Hypothesis properties of the backoff schedules: bounds, caps, determinism, monotone expectation."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from stalwart import Backoff, Jitter

jitters = st.sampled_from([Jitter.NONE, Jitter.FULL, Jitter.EQUAL, Jitter.DECORRELATED]) | st.floats(0.0, 1.0).map(
    Jitter.proportional
)
seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)
multipliers = st.floats(min_value=1.0, max_value=1e6, allow_nan=False)
attempts = st.integers(min_value=0, max_value=10**6) | st.integers(min_value=0, max_value=10**400)
unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    jitter = draw(jitters)
    kind = draw(st.sampled_from(["exponential", "linear", "constant"]))
    initial = draw(positive if jitter.kind == "decorrelated" else seconds)
    if kind == "constant":
        return Backoff.constant(initial, jitter=jitter)
    max_delay = initial + draw(seconds)
    if kind == "linear":
        return Backoff.linear(initial, draw(seconds), max_delay, jitter=jitter)
    return Backoff.exponential(initial, draw(multipliers), max_delay, jitter=jitter)


@given(backoffs(), attempts, st.floats(allow_nan=True, allow_infinity=True), st.integers())
def test_delay_is_finite_non_negative_and_capped(backoff: Backoff, n: int, previous: float, seed: int) -> None:
    d = backoff.delay(n, previous, random.Random(seed).random)
    assert math.isfinite(d)
    assert 0.0 <= d <= backoff.max_delay


@given(backoffs(), st.integers(min_value=0, max_value=40), st.integers())
def test_schedule_is_deterministic_for_a_seeded_rng(backoff: Backoff, count: int, seed: int) -> None:
    assert backoff.delays(count, random.Random(seed).random) == backoff.delays(count, random.Random(seed).random)


@given(positive, multipliers, seconds, st.integers(min_value=0, max_value=200))
def test_exponential_without_jitter_is_the_pinned_formula(
    initial: float, multiplier: float, extra: float, n: int
) -> None:
    max_delay = initial + extra
    b = Backoff.exponential(initial, multiplier, max_delay, Jitter.NONE)
    try:
        expected = min(max_delay, initial * multiplier**n)
    except OverflowError:
        expected = max_delay
    assert math.isclose(b.delay(n), expected, rel_tol=1e-9)


@given(backoffs().filter(lambda b: b.jitter.kind != "decorrelated"), unit, st.integers(0, 300))
def test_monotone_in_n_for_a_fixed_draw(backoff: Backoff, u: float, n: int) -> None:
    # With the same draw u, a later retry never waits less; so the expectation over u is monotone too.
    assert backoff.delay(n, 0.0, lambda: u) <= backoff.delay(n + 1, 0.0, lambda: u)


@given(positive, multipliers, seconds, st.integers(0, 300))
def test_expected_delay_is_monotone_for_exponential(initial: float, multiplier: float, extra: float, n: int) -> None:
    # Closed forms of the expectation over u ~ U(0, 1): NONE d, FULL d/2, EQUAL 3d/4, proportional d (before cap).
    b = Backoff.exponential(initial, multiplier, initial + extra, Jitter.NONE)
    assert b.delay(n) <= b.delay(n + 1)
    full = Backoff.exponential(initial, multiplier, initial + extra, Jitter.FULL)
    assert math.isclose(full.delay(n, 0.0, lambda: 0.5), b.delay(n) / 2, rel_tol=1e-9)


@given(backoffs(), attempts, unit)
def test_jitter_bounds_relative_to_base(backoff: Backoff, n: int, u: float) -> None:
    base = Backoff(
        initial=backoff.initial,
        multiplier=backoff.multiplier,
        increment=backoff.increment,
        max_delay=backoff.max_delay,
        jitter=Jitter.NONE,
    ).delay(n)
    d = backoff.delay(n, 0.0, lambda: u)
    kind = backoff.jitter.kind
    if kind == "none":
        assert d == base
    elif kind == "full":
        assert 0.0 <= d <= base
    elif kind == "equal":
        assert base / 2 * (1 - 1e-12) <= d <= base
    elif kind == "proportional":
        f = backoff.jitter.factor
        assert base * (1 - f) * (1 - 1e-12) <= d <= min(backoff.max_delay, base * (1 + f) * (1 + 1e-12))
    else:  # decorrelated, previous 0 -> U(initial, 3 * initial), capped
        assert min(backoff.max_delay, backoff.initial) <= d <= min(backoff.max_delay, 3 * backoff.initial)


@given(positive, st.floats(0.0, 1e6), unit)
def test_decorrelated_stays_between_initial_and_three_times_previous(initial: float, previous: float, u: float) -> None:
    b = Backoff.exponential(initial, 2.0, initial * 1000, Jitter.DECORRELATED)
    d = b.delay(5, previous, lambda: u)
    high = 3 * max(previous, initial)
    assert initial * (1 - 1e-12) <= d <= min(b.max_delay, high * (1 + 1e-12))
