"""Regression: a server-requested delay given as a ``timedelta``, ``Decimal`` or ``Fraction`` was ignored.

What was wrong: ``valid_retry_after`` accepted only ``int`` and ``float``; any other number was "not a number" and
silently replaced by the computed backoff. An extractor returning ``timedelta(seconds=30)`` (stalwart takes a
``timedelta`` for every other duration, ``max_retry_after`` included) or a ``Decimal`` parsed from a payload, or a
NumPy scalar, therefore retried after about a second instead of the 30 s the server asked for: exactly the early
retry that pushback exists to prevent, and, for a request above ``max_retry_after``, a retry instead of giving up
(the inverse of the overflow bug in ``test_retry_after_overflow.py``; the docs promise "a number >= 0" is used).
Now every real number (``numbers.Real``, ``Decimal``) and a ``timedelta`` is a delay in seconds; negative, NaN
and non-numeric values are still ignored.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

import stalwart as sw
from stalwart._retry_policy import valid_retry_after
from stalwart.testing import FakeClock


class Busy(Exception):
    pass


@pytest.mark.parametrize(
    ("requested", "seconds"),
    [(timedelta(seconds=30), 30.0), (Decimal("2.5"), 2.5), (Fraction(3, 2), 1.5), (timedelta(0), 0.0)],
)
def test_the_requested_delay_is_waited(requested: object, seconds: float) -> None:
    clock = FakeClock()
    outcomes: list[object] = [Busy(), "ok"]

    def busy() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    retry = sw.Retry(on=Busy, retry_after=lambda exc: requested, backoff=sw.Backoff.constant(1.0), clock=clock)  # type: ignore[arg-type,return-value]
    assert retry.call(busy) == "ok"
    assert clock.sleeps == ([seconds] if seconds > 0 else [])


@pytest.mark.parametrize("requested", [timedelta(minutes=2), Decimal(61), Fraction(10**400), Decimal("Infinity")])
def test_a_request_above_the_cap_gives_up(requested: object) -> None:
    clock = FakeClock()
    calls = []

    def busy() -> None:
        calls.append(1)
        raise Busy

    with pytest.raises(Busy) as info:
        sw.Retry(on=Busy, retry_after=lambda exc: requested, clock=clock).call(busy)  # type: ignore[arg-type,return-value]
    assert calls == [1]
    assert "max_retry_after" in info.value.__notes__[0]


@pytest.mark.parametrize(
    "bad", [timedelta(seconds=-1), Decimal(-1), Decimal("NaN"), Decimal("sNaN"), Fraction(-1, 2), True, "30", 3 + 0j]
)
def test_invalid_values_are_still_ignored(bad: object) -> None:
    assert valid_retry_after(bad) is None


def test_overflowing_numbers_are_infinite() -> None:
    assert valid_retry_after(Fraction(10**400)) == math.inf
    assert valid_retry_after(Decimal("1e400")) == math.inf
