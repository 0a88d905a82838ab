"""Table tests of the backoff schedules and jitter kinds (stalwart._backoff)."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from stalwart import Backoff, Jitter


def fixed(value: float):
    """A random source that always returns ``value``."""
    return lambda: value


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        # DESIGN.md: min(max_delay, initial * multiplier**n), n = 0 for the first retry.
        (Backoff.exponential(jitter=Jitter.NONE), [1, 2, 4, 8, 16, 32, 60, 60, 60]),
        (Backoff.exponential(0.1, 3.0, 5.0, Jitter.NONE), [0.1, 0.3, 0.9, 2.7, 5.0, 5.0]),
        (Backoff.exponential(0.5, 1.0, 5.0, Jitter.NONE), [0.5, 0.5, 0.5]),
        (Backoff.exponential(0.0, 2.0, 5.0, Jitter.NONE), [0.0, 0.0, 0.0]),
        (Backoff.exponential(2.0, 2.0, 2.0, Jitter.NONE), [2.0, 2.0, 2.0]),
        (Backoff.linear(jitter=Jitter.NONE), [1, 2, 3, 4, 5]),
        (Backoff.linear(0.5, 0.25, 1.0), [0.5, 0.75, 1.0, 1.0]),
        (Backoff.linear(0.0, 2.0, 5.0), [0.0, 2.0, 4.0, 5.0, 5.0]),
        (Backoff.constant(0.25), [0.25, 0.25, 0.25, 0.25]),
        (Backoff.constant(0), [0.0, 0.0]),
        (Backoff.constant(timedelta(milliseconds=1500)), [1.5, 1.5]),
        (Backoff(initial=1.0, multiplier=2.0, increment=1.0, max_delay=100.0, jitter=Jitter.NONE), [1, 3, 6, 11, 20]),
    ],
)
def test_schedules_without_jitter(backoff: Backoff, expected: list[float]) -> None:
    assert backoff.delays(len(expected)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("jitter", "u", "expected"),
    [
        (Jitter.NONE, 0.3, 8.0),
        (Jitter.FULL, 0.0, 0.0),
        (Jitter.FULL, 0.5, 4.0),
        (Jitter.FULL, 0.999, 8.0 * 0.999),
        (Jitter.EQUAL, 0.0, 4.0),
        (Jitter.EQUAL, 0.5, 6.0),
        (Jitter.EQUAL, 0.999, 4.0 + 4.0 * 0.999),
        (Jitter.proportional(0.5), 0.0, 4.0),  # the seed: x U(0.5, 1.5)
        (Jitter.proportional(0.5), 0.5, 8.0),
        (Jitter.proportional(0.5), 0.75, 10.0),
        (Jitter.proportional(0.0), 0.9, 8.0),
        (Jitter.proportional(1.0), 0.0, 0.0),
    ],
)
def test_jitter_table(jitter: Jitter, u: float, expected: float) -> None:
    # n = 3 with initial 1 and multiplier 2 gives a base delay of 8 s, below the 60 s cap.
    backoff = Backoff.exponential(jitter=jitter)
    assert backoff.delay(3, 0.0, fixed(u)) == pytest.approx(expected)


def test_cap_applies_after_jitter() -> None:
    # Base at n=10 is the 60 s cap; proportional jitter of x1.5 would give 90 s: capped again.
    backoff = Backoff.exponential(jitter=Jitter.proportional(0.5))
    assert backoff.delay(10, 0.0, fixed(0.999)) == 60.0
    assert backoff.delay(10, 0.0, fixed(0.0)) == 30.0


@pytest.mark.parametrize(
    ("previous", "u", "expected"),
    [
        # AWS: sleep = min(cap, random_between(base, sleep * 3)), sleep starting at base.
        (0.0, 0.0, 1.0),  # first retry: previous counts as initial -> U(1, 3)
        (0.0, 0.5, 2.0),
        (1.0, 0.5, 2.0),
        (10.0, 0.0, 1.0),
        (10.0, 0.5, 15.5),  # U(1, 30)
        (30.0, 0.9, 60.0),  # U(1, 90) = 81.1 -> capped at 60
        (math.nan, 0.5, 2.0),
        (-5.0, 0.5, 2.0),
    ],
)
def test_decorrelated_jitter(previous: float, u: float, expected: float) -> None:
    backoff = Backoff.exponential(jitter=Jitter.DECORRELATED)
    assert backoff.delay(4, previous, fixed(u)) == pytest.approx(expected)


def test_decorrelated_delays_feed_previous() -> None:
    backoff = Backoff.exponential(initial=1.0, max_delay=1000.0, jitter=Jitter.DECORRELATED)
    # With u -> 1 every delay nearly triples: 3, 9, 27 ...
    delays = backoff.delays(4, fixed(0.999999))
    assert delays == pytest.approx([3.0, 9.0, 27.0, 81.0], rel=1e-4)


@pytest.mark.parametrize("n", [0, 1, 10, 63, 64, 1000, 10_000, 10**6, 10**100, 10**400])
@pytest.mark.parametrize(
    "backoff",
    [
        Backoff.exponential(jitter=Jitter.NONE),
        Backoff.exponential(initial=1e-300, multiplier=10.0, max_delay=1e300, jitter=Jitter.NONE),
        Backoff.exponential(initial=5e-324, multiplier=1e300, max_delay=60.0, jitter=Jitter.NONE),
        Backoff.exponential(initial=1.0, multiplier=1.0000001, max_delay=60.0, jitter=Jitter.NONE),
        Backoff.linear(0.0, 5e-324, 60.0),
        Backoff.linear(1.0, 1e300, 1e308),
    ],
)
def test_huge_attempt_numbers_never_overflow(backoff: Backoff, n: int) -> None:
    d = backoff.delay(n)
    assert math.isfinite(d)
    assert 0.0 <= d <= backoff.max_delay


def test_large_attempt_reaches_cap_exactly() -> None:
    assert Backoff.exponential(jitter=Jitter.NONE).delay(10_000) == 60.0
    assert Backoff.linear(1.0, 1.0, 30.0).delay(10**30) == 30.0


def test_defaults_are_pinned() -> None:
    # DESIGN.md: initial=1.0, multiplier=2.0, max_delay=60.0, jitter=FULL.
    b = Backoff.exponential()
    assert (b.initial, b.multiplier, b.max_delay, b.jitter) == (1.0, 2.0, 60.0, Jitter.FULL)
    assert Backoff() == b


def test_frozen_and_slotted() -> None:
    b = Backoff.exponential()
    with pytest.raises(AttributeError):
        b.initial = 2.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Jitter.FULL.kind = "none"  # type: ignore[misc]
    assert not hasattr(b, "__dict__")
    assert not hasattr(Jitter.FULL, "__dict__")


def test_reprs() -> None:
    assert repr(Jitter.FULL) == "Jitter.FULL"
    assert repr(Jitter.DECORRELATED) == "Jitter.DECORRELATED"
    assert repr(Jitter.proportional(0.5)) == "Jitter.proportional(0.5)"
    assert "jitter=Jitter.NONE" in repr(Backoff.constant(1))


def test_timedelta_is_normalised() -> None:
    b = Backoff.exponential(initial=timedelta(milliseconds=100), max_delay=timedelta(seconds=2))
    assert (b.initial, b.max_delay) == (0.1, 2.0)
    assert isinstance(b.initial, float)


def test_seeded_random_is_deterministic() -> None:
    b = Backoff.exponential()
    assert b.delays(8, random.Random(7).random) == b.delays(8, random.Random(7).random)
    assert b.delays(8, random.Random(7).random) != b.delays(8, random.Random(8).random)


def test_misbehaving_random_cannot_escape_bounds() -> None:
    for jitter in (Jitter.FULL, Jitter.EQUAL, Jitter.DECORRELATED, Jitter.proportional(0.5)):
        b = Backoff.exponential(jitter=jitter)
        for value in (-1.0, 5.0, math.nan, math.inf, -math.inf):
            d = b.delay(2, 4.0, fixed(value))
            assert 0.0 <= d <= 60.0, (jitter, value, d)


@pytest.mark.parametrize(
    ("make", "parameter", "error"),
    [
        (lambda: Backoff.exponential(initial=-1.0), "initial", ValueError),
        (lambda: Backoff.exponential(initial=math.nan), "initial", ValueError),
        (lambda: Backoff.exponential(initial=math.inf), "initial", ValueError),
        (lambda: Backoff.exponential(initial="1"), "initial", TypeError),
        (lambda: Backoff.exponential(multiplier=0.5), "multiplier", ValueError),
        (lambda: Backoff.exponential(multiplier=math.nan), "multiplier", ValueError),
        (lambda: Backoff.exponential(multiplier=math.inf), "multiplier", ValueError),
        (lambda: Backoff.exponential(multiplier=True), "multiplier", TypeError),
        (lambda: Backoff.exponential(max_delay=-1.0), "max_delay", ValueError),
        (lambda: Backoff.exponential(max_delay=math.inf), "max_delay", ValueError),
        (lambda: Backoff.exponential(initial=100.0), "max_delay", ValueError),  # cap below the first delay
        (lambda: Backoff.exponential(jitter="full"), "jitter", TypeError),
        (lambda: Backoff.exponential(initial=0.0, jitter=Jitter.DECORRELATED), "initial", ValueError),
        (lambda: Backoff.linear(increment=-1.0), "increment", ValueError),
        (lambda: Backoff.linear(increment=math.nan), "increment", ValueError),
        (lambda: Backoff.constant(-0.5), "delay", ValueError),
        (lambda: Backoff.constant(math.inf), "delay", ValueError),
        (lambda: Jitter.proportional(1.5), "factor", ValueError),
        (lambda: Jitter.proportional(-0.1), "factor", ValueError),
        (lambda: Jitter.proportional(math.nan), "factor", ValueError),
        (lambda: Jitter.proportional("0.5"), "factor", TypeError),
        (lambda: Jitter("full", 0.5), "factor", ValueError),
        (lambda: Jitter("sideways"), "kind", ValueError),
    ],
)
def test_invalid_parameters_name_the_parameter(make, parameter: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=parameter):
        make()


def test_negative_attempt_index_is_refused() -> None:
    with pytest.raises(ValueError, match="n must be"):
        Backoff.exponential().delay(-1)
    with pytest.raises(ValueError, match="count"):
        Backoff.exponential().delays(-1)
