"""Regression: samples that never reached AdaptiveTimeout's estimate, or reached it in a form that broke it.

What was wrong, two faults of one kind (what a call or a caller reports must become one valid float sample):

* **Timed-out sync calls were not recorded.** Issue 6: "timed-out calls are recorded as censored samples at the
  timeout value, so the estimate can grow when the service slows down". Only an async call cancelled by the
  policy's own timer was censored. A sync call is not pre-empted: it is cut when what it runs (a sync ``Retry``, the
  sync transport, a nested ``Timeout``) gives up at the ambient deadline the policy set, raising
  ``DeadlineExceeded``, and that was "a failure", not recorded. After a 3x latency step every sync call timed out
  and the estimate never moved: 100 % failures for as long as the step lasted (the async path recovers after 4
  samples). The same for an async call whose inner code raised ``DeadlineExceeded`` at the policy's deadline before
  the timer fired (a child task's scope clamped to it).
* **record() kept what it was given.** A ``Decimal`` sample went into the window as a ``Decimal``: ``Decimal *
  float`` raised ``TypeError`` in that record and every later one while it was the quantile; an ``int`` too large
  for a float passed the range check (``10**400 < inf``), stayed the window's maximum, and every later record
  raised ``OverflowError`` until it left the window. Numbers are converted to ``float`` first (as every other
  duration stalwart takes: ``int``, ``Fraction``, ``Decimal``, NumPy scalars, ``timedelta``), a value beyond float
  range is refused with ``ValueError`` and a non-number (``bool`` included) with ``TypeError``, before the window
  changes.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


def exact(clock: FakeClock, **kwargs: object) -> sw.AdaptiveTimeout:
    """Timeout = the largest of the last 10 samples x 1.5, from the first sample."""
    settings: dict[str, object] = {
        "initial": 1.0,
        "minimum": 0.01,
        "maximum": 30.0,
        "min_samples": 1,
        "window": 10,
        "percentile": 1.0,
        "clock": clock,
    }
    return sw.AdaptiveTimeout(**{**settings, **kwargs})  # type: ignore[arg-type]


class SyncDownstream:
    """A sync client honouring the ambient deadline: a call longer than the time left gives up at the deadline."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def __call__(self, latency: float) -> str:
        left = sw.remaining_time()
        if left is not None and latency > left:
            self.clock.advance(left)
            raise sw.DeadlineExceeded("read timed out at the deadline", timeout=left)
        self.clock.advance(latency)
        return "ok"


# -- censored samples of calls cut at the policy's deadline ----------------------------------------------------------


def test_a_sync_call_cut_at_the_deadline_is_a_censored_sample() -> None:
    clock = FakeClock()
    adaptive = exact(clock)
    downstream = SyncDownstream(clock)
    adaptive.call(downstream, 0.2)
    assert adaptive.current_limit() == pytest.approx(0.3)
    with pytest.raises(sw.DeadlineExceeded):
        adaptive.call(downstream, 0.6)  # 3x the latency: cut at 0.3 s
    assert adaptive.samples == 2
    assert adaptive.current_limit() == pytest.approx(0.45)  # the censored 0.3 s x 1.5


def test_sync_calls_follow_a_3x_latency_step() -> None:
    clock = FakeClock()
    adaptive = exact(clock)
    downstream = SyncDownstream(clock)
    for _ in range(10):
        adaptive.call(downstream, 0.2)
    outcomes = []
    for _ in range(10):
        try:
            outcomes.append(adaptive.call(downstream, 0.6))
        except sw.DeadlineExceeded:
            outcomes.append("cut")
    assert outcomes[:2] == ["cut", "cut"]  # 0.3 s, then 0.45 s: both below 0.6 s
    assert outcomes[-5:] == ["ok"] * 5  # the estimate grew past the new latency (0.675 s)


def test_a_sync_deadline_error_before_the_deadline_is_not_recorded() -> None:
    clock = FakeClock()
    adaptive = exact(clock, initial=5.0)

    def inner_timeout() -> None:
        clock.advance(0.1)
        raise sw.DeadlineExceeded("a tighter inner timeout", timeout=0.1)  # our 5 s deadline has not passed

    with pytest.raises(sw.DeadlineExceeded):
        adaptive.call(inner_timeout)
    assert adaptive.samples == 0


def test_a_sync_call_under_a_tighter_ambient_deadline_is_not_recorded() -> None:
    clock = FakeClock()
    adaptive = exact(clock, initial=5.0)
    downstream = SyncDownstream(clock)
    with sw.deadline(0.5, clock=clock), pytest.raises(sw.DeadlineExceeded):
        adaptive.call(downstream, 2.0)  # cut by the caller's deadline, not by this timeout
    assert adaptive.samples == 0


async def test_an_async_call_giving_up_at_the_deadline_before_the_timer_is_a_censored_sample() -> None:
    clock = FakeClock()
    adaptive = exact(clock, initial=0.5)

    async def gives_up() -> None:
        await asyncio.sleep(0)
        clock.advance(0.5)  # the policy's deadline passes on its clock; the code inside sees it first
        raise sw.DeadlineExceeded("the deadline passed before attempt 2 could start", timeout=0.0)

    with pytest.raises(sw.DeadlineExceeded):
        await adaptive.run(gives_up)
    assert adaptive.samples == 1
    assert adaptive.current_limit() == pytest.approx(0.75)


async def test_an_async_deadline_error_before_the_deadline_is_not_recorded() -> None:
    clock = FakeClock()
    adaptive = exact(clock, initial=5.0)

    async def inner_timeout() -> None:
        clock.advance(0.1)
        raise sw.DeadlineExceeded("a tighter inner timeout", timeout=0.1)

    with pytest.raises(sw.DeadlineExceeded):
        await adaptive.run(inner_timeout)
    assert adaptive.samples == 0


# -- the form of a sample ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given", [Decimal("2"), Fraction(2), 2, timedelta(seconds=2)], ids=["Decimal", "Fraction", "int", "timedelta"]
)
@pytest.mark.parametrize("window", [10, 5000], ids=["exact", "histogram"])
def test_numbers_are_recorded_as_floats(given: object, window: int) -> None:
    adaptive = exact(FakeClock(), window=window)
    adaptive.record(given)  # type: ignore[arg-type]
    adaptive.record(0.5)  # a later record still computes the estimate
    assert adaptive.current_limit() == 3.0
    assert all(type(sample) is float for sample in adaptive._default.window.samples())


@pytest.mark.parametrize("window", [10, 5000], ids=["exact", "histogram"])
def test_a_number_beyond_float_range_is_refused_before_the_window_changes(window: int) -> None:
    adaptive = exact(FakeClock(), window=window)
    with pytest.raises(ValueError, match="seconds"):
        adaptive.record(10**400)
    assert adaptive.samples == 0
    adaptive.record(0.5)
    assert adaptive.current_limit() == 0.75


@pytest.mark.parametrize("given", [True, "0.5", None, [0.5]], ids=["bool", "str", "None", "list"])
def test_a_non_number_is_refused_with_type_error(given: object) -> None:
    adaptive = exact(FakeClock())
    with pytest.raises(TypeError, match="seconds"):
        adaptive.record(given)  # type: ignore[arg-type]
    assert adaptive.samples == 0
