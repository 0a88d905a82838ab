"""Regression: numbers too large for a float, and unvalidated numbers, escaped the "ValueError naming the
parameter" rule.

What was wrong:

* ``to_seconds`` called ``float(value)`` unguarded, so an ``int`` too large for a float (``10**400``) raised a bare
  ``OverflowError: int too large to convert to float`` that named no parameter from ``Timeout``, ``deadline``,
  ``Retry(max_elapsed=…)``, every ``Backoff`` field, ``Bulkhead(queue_timeout=…)`` and more; ``check_percent``
  (``math.isnan`` on the int), the retry budgets' positive numbers, ``RetryBudget.ratio(min_per_second=…)`` and
  ``Backoff(multiplier=…)`` did the same after their range checks had passed.
* ``Bulkhead(max_concurrent=…)`` allocated one list entry per slot: ``10**29`` raised ``OverflowError`` and
  ``10**9`` tried to allocate 8 GB.
* ``Deadline(at)`` accepted anything (NaN, a string, ``None``, ``True``): a NaN deadline was neither expired nor had
  time left, and a string failed later, far from its cause.
* ``FakeClock(start)`` and ``FakeClock.advance(seconds)`` accepted NaN, infinity, booleans and strings, leaving a
  fake clock whose time is NaN forever.

Peer report of the same kind: uvloop issue #259 ("OverflowError with asyncio.sleep": a large but legal-looking delay
such as ``sys.maxsize`` failed deep inside with an ``OverflowError``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import pytest

import stalwart as sw
from stalwart.testing import FakeClock

HUGE = 10**400  # no float can hold it

CONSTRUCTORS: dict[str, Callable[[object], object]] = {
    "seconds": lambda v: sw.Timeout(v),  # type: ignore[arg-type]
    "max_elapsed": lambda v: sw.Retry(on=OSError, max_elapsed=v),  # type: ignore[arg-type]
    "min_attempt_time": lambda v: sw.Retry(on=OSError, min_attempt_time=v),  # type: ignore[arg-type]
    "initial": lambda v: sw.Backoff.exponential(initial=v),  # type: ignore[arg-type]
    "multiplier": lambda v: sw.Backoff.exponential(multiplier=v),  # type: ignore[arg-type]
    "max_delay": lambda v: sw.Backoff.exponential(max_delay=v),  # type: ignore[arg-type]
    "delay": lambda v: sw.Backoff.constant(v),  # type: ignore[arg-type]
    "increment": lambda v: sw.Backoff.linear(increment=v),  # type: ignore[arg-type]
    "max_tokens": lambda v: sw.RetryBudget(max_tokens=v),  # type: ignore[arg-type]
    "token_ratio": lambda v: sw.RetryBudget(token_ratio=v),  # type: ignore[arg-type]
    "percent": lambda v: sw.RetryBudget.ratio(percent=v),  # type: ignore[arg-type]
    "ttl": lambda v: sw.RetryBudget.ratio(ttl=v),  # type: ignore[arg-type]
    "min_per_second": lambda v: sw.RetryBudget.ratio(min_per_second=v),  # type: ignore[arg-type]
    "max_concurrent": lambda v: sw.Bulkhead("huge", max_concurrent=v),  # type: ignore[arg-type]
    "buffer": lambda v: sw.Deadline(0.0).child(v),  # type: ignore[arg-type]
    "total_timeout": lambda v: sw.Pipeline.standard(total_timeout=v),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("parameter", list(CONSTRUCTORS))
def test_an_int_too_large_for_a_float_is_a_value_error_naming_the_parameter(parameter: str) -> None:
    build = CONSTRUCTORS[parameter]
    name = "seconds" if parameter == "total_timeout" else parameter  # the Timeout it builds names its own
    with pytest.raises(ValueError, match=name):
        build(HUGE)


@pytest.mark.parametrize(
    "build",
    [
        lambda: sw.deadline(HUGE),
        lambda: sw.Deadline.after(HUGE),
        lambda: sw.Bulkhead("b", queue_timeout=HUGE),
        lambda: sw.Retry(on=OSError, max_retry_after=HUGE),
    ],
)
def test_where_infinity_is_allowed_a_huge_int_means_infinity(build: Callable[[], object]) -> None:
    build()  # no OverflowError


def test_where_infinity_is_allowed_the_value_is_infinite() -> None:
    assert sw.Deadline.after(HUGE).at == math.inf
    assert sw.Bulkhead("b", queue_timeout=HUGE).queue_timeout is None
    assert sw.Retry(on=OSError, max_retry_after=HUGE).rules.max_retry_after == math.inf


def test_bulkhead_slots_are_bounded() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        sw.Bulkhead("too-many", max_concurrent=10**9)
    assert sw.Bulkhead("many", max_concurrent=1_000_000).statistics().available == 1_000_000


@pytest.mark.parametrize(
    ("at", "error"),
    [(math.nan, ValueError), ("1", TypeError), (None, TypeError), (True, TypeError), (timedelta(1), TypeError)],
)
def test_deadline_validates_its_instant(at: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="at"):
        sw.Deadline(at)  # type: ignore[arg-type]


def test_deadline_keeps_the_valid_instants() -> None:
    assert sw.Deadline(5).at == 5.0
    assert isinstance(sw.Deadline(5).at, float)
    assert sw.Deadline(math.inf).remaining() == math.inf
    assert sw.Deadline(-math.inf).expired
    with pytest.raises(TypeError, match="clock"):
        sw.Deadline(1.0, clock=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "error"),
    [(math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError), (True, TypeError), ("0", TypeError)],
)
def test_fake_clock_start_must_be_a_finite_number(start: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="start"):
        FakeClock(start)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("step", "error"),
    [(math.nan, ValueError), (math.inf, ValueError), (-1.0, ValueError), (True, TypeError), ("1", TypeError)],
)
def test_fake_clock_advance_refuses_steps_that_would_break_it(step: object, error: type[Exception]) -> None:
    clock = FakeClock(3.0)
    with pytest.raises(error, match="seconds"):
        clock.advance(step)  # type: ignore[arg-type]
    assert clock.monotonic() == 3.0


def test_fake_clock_accepts_negative_starts_and_timedelta_steps() -> None:
    clock = FakeClock(-5)
    clock.advance(timedelta(seconds=2))
    assert clock.monotonic() == -3.0


def test_messages_name_the_parameter_and_the_rule() -> None:
    """A new user's misuses (a fresh-clone review): each message names the parameter and states the rule right."""
    with pytest.raises(ValueError, match=r"^seconds must be > 0 seconds, got -1.0$"):
        sw.Timeout(-1)  # zero is refused too: the rule is "> 0", not ">= 0"
    with pytest.raises(TypeError, match=r"^retry must be a policy or None, got 3$"):
        sw.Pipeline.standard(retry=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"state must be a CircuitState or one of 'closed', .*got 'bogus'"):
        sw.CircuitBreaker("x").transition_to("bogus")  # type: ignore[arg-type]
