"""Deadline arithmetic and sync scope nesting (pure: a fake clock, no event loop)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart import Deadline, current_deadline, deadline, remaining_time
from stalwart.testing import FakeClock


def test_after_and_remaining_on_a_fake_clock() -> None:
    clock = FakeClock(100.0)
    d = Deadline.after(2.5, clock=clock)
    assert d.at == 102.5
    assert d.remaining() == 2.5
    clock.advance(1.0)
    assert d.remaining() == 1.5
    assert not d.expired
    clock.advance(2.0)
    assert d.remaining() == 0.0  # never negative
    assert d.expired


def test_after_accepts_timedelta_and_remaining_takes_now() -> None:
    clock = FakeClock()
    d = Deadline.after(timedelta(milliseconds=250), clock=clock)
    assert d.at == 0.25
    assert d.remaining(now=0.05) == pytest.approx(0.2)


@pytest.mark.parametrize(("buffer", "expected"), [(0.5, 9.5), (timedelta(seconds=1), 9.0), (0, 10.0), (20.0, -10.0)])
def test_child_keeps_a_buffer_and_may_be_expired(buffer: float | timedelta, expected: float) -> None:
    clock = FakeClock()
    child = Deadline(10.0, clock).child(buffer)
    assert child.at == expected
    assert child.clock is clock
    assert child.expired is (expected <= 0)


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_invalid_durations_are_value_errors(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        Deadline.after(bad)
    with pytest.raises(ValueError, match="buffer"):
        Deadline(1.0).child(bad)
    with pytest.raises(ValueError, match="seconds"):
        deadline(bad)


def test_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="seconds"):
        deadline("1")  # type: ignore[arg-type]


def test_ordering() -> None:
    assert Deadline(1.0) < Deadline(2.0)
    assert min(Deadline(3.0), Deadline(1.0)).at == 1.0


def test_sync_scope_sets_and_resets_the_ambient_deadline() -> None:
    clock = FakeClock(5.0)
    assert current_deadline() is None
    assert remaining_time() is None
    with deadline(2.0, clock=clock) as d:
        assert d is not None
        assert current_deadline() is d
        assert d.at == 7.0
        clock.advance(0.5)
        assert remaining_time() == 1.5
    assert current_deadline() is None


def test_sync_scope_resets_on_exception() -> None:
    clock = FakeClock()
    with pytest.raises(RuntimeError), deadline(1.0, clock=clock):
        raise RuntimeError
    assert current_deadline() is None


def test_sync_scope_does_not_raise_when_expired() -> None:
    # Sync code cannot be pre-empted: the scope only sets the ambient deadline.
    clock = FakeClock()
    with deadline(1.0, clock=clock) as d:
        clock.advance(5.0)
    assert d is not None
    assert d.expired


def test_unlimited_scope_keeps_the_enclosing_deadline() -> None:
    clock = FakeClock()
    with deadline(1.0, clock=clock) as outer:
        with deadline(None, clock=clock) as inner:
            assert inner is outer
        with deadline(math.inf, clock=clock) as inner2:
            assert inner2 is outer
    with deadline(None) as none:
        assert none is None
        assert current_deadline() is None


def test_scope_cannot_be_entered_twice() -> None:
    scope = deadline(1.0, clock=FakeClock())
    with scope:
        pass
    with pytest.raises(RuntimeError, match="twice"), scope:
        pass


def test_nesting_compares_time_left_across_clocks() -> None:
    # An enclosing deadline on another clock is compared by the time it has left, not by raw instants.
    outer_clock = FakeClock(1000.0)
    inner_clock = FakeClock(0.0)
    with deadline(1.0, clock=outer_clock) as outer:
        with deadline(5.0, clock=inner_clock) as inner:
            assert inner is outer
        with deadline(0.5, clock=inner_clock) as tighter:
            assert tighter is not None
            assert tighter.clock is inner_clock
            assert tighter.at == 0.5


@given(st.lists(st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e6)), min_size=1, max_size=8))
def test_nested_scopes_take_the_minimum(limits: list[float | None]) -> None:
    clock = FakeClock(42.0)
    seen: list[float | None] = []

    def nest(index: int) -> None:
        if index == len(limits):
            return
        with deadline(limits[index], clock=clock) as d:
            seen.append(None if d is None else d.at)
            nest(index + 1)
        # Exiting restores the enclosing deadline.
        expected_outer = seen[index - 1] if index else None
        current = current_deadline()
        assert (None if current is None else current.at) == expected_outer

    nest(0)
    running: float | None = None
    for limit, effective in zip(limits, seen, strict=True):
        if limit is not None:
            running = 42.0 + limit if running is None else min(running, 42.0 + limit)
        assert effective == running
    assert current_deadline() is None
