"""An open-period schedule (``reset_timeout=<object with delay()>``) whose value is out of float range.

``reset_timeout`` may be any object with ``delay(n, previous, random) -> float``. The machine mapped a negative or
NaN delay to 0 but passed ``inf`` through: the breaker's ``retry_after`` became ``inf``, and the health endpoint,
which writes strict JSON, failed with ``ValueError`` (a 500) for every request while that breaker was open. A huge
``int`` (``10**400``) made ``float()`` raise ``OverflowError`` in the middle of the transition, leaving the breaker
OPEN with no open period. Now such values mean "practically forever" (the largest float), as a ``reset_timeout`` of
``1e308`` does: the breaker stays open, and everything that reports it stays finite.
"""

from __future__ import annotations

import json
import math
import sys

import pytest

import stalwart as sw
from stalwart.asgi import HealthApp
from stalwart.testing import FakeClock


class Schedule:
    def __init__(self, value: object) -> None:
        self.value = value

    def delay(self, n: int, previous: float, random: object) -> float:
        return self.value  # type: ignore[return-value]


def fail() -> None:
    raise ZeroDivisionError


@pytest.mark.parametrize("value", [math.inf, 10**400, 1e308 * 10], ids=["inf", "huge-int", "overflowed-float"])
def test_an_unbounded_open_period_keeps_the_breaker_open_and_reports_finite_numbers(value: object) -> None:
    clock = FakeClock(1000.0)
    registry = sw.Registry(defaults={"clock": clock})
    breaker = registry.breaker("db", failure_threshold=1, reset_timeout=Schedule(value), critical=True)
    with pytest.raises(ZeroDivisionError):
        breaker.call(fail)
    assert breaker.state is sw.CircuitState.OPEN
    clock.advance(1e9)
    with pytest.raises(sw.CircuitOpenError) as caught:
        breaker.call(fail)
    assert caught.value.retry_after is not None
    assert math.isfinite(caught.value.retry_after)
    assert caught.value.retry_after > 1e300
    stats = breaker.statistics()
    assert stats.state is sw.CircuitState.OPEN
    assert stats.retry_after is not None
    assert math.isfinite(stats.retry_after)
    status, body = HealthApp(registry).render("/circuits")
    assert status == 503
    assert json.loads(body)["circuits"]["db"]["retry_after"] == pytest.approx(sys.float_info.max)


def test_nan_and_negative_still_mean_no_open_period() -> None:
    clock = FakeClock()
    for value in (math.nan, -5.0):
        breaker = sw.CircuitBreaker("db", failure_threshold=1, reset_timeout=Schedule(value), clock=clock)
        with pytest.raises(ZeroDivisionError):
            breaker.call(fail)
        assert breaker.statistics().state is sw.CircuitState.HALF_OPEN
