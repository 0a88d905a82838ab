"""Regression: ``Timeout(seconds, clock=...)`` and ``deadline(seconds, clock=...)`` accepted any clock.

What was wrong: ``Retry`` and the retry budgets validated their ``clock`` argument, but ``Timeout`` and ``deadline``
stored whatever they were given. ``Timeout(1.0, clock=None)`` or ``clock=FakeClock`` (the class, a common slip)
constructed fine and failed at the first call, deep inside the deadline machinery, with an ``AttributeError`` or a
``TypeError`` about a missing ``self``, naming no parameter. Invalid configuration must fail at construction with
an error naming the parameter (DESIGN.md §1.7).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import stalwart as sw
from stalwart.testing import FakeClock

BUILDERS: list[Callable[[object], object]] = [
    lambda clock: sw.Timeout(1.0, clock=clock),  # type: ignore[arg-type]
    lambda clock: sw.deadline(1.0, clock=clock),  # type: ignore[arg-type]
    lambda clock: sw.Deadline(1.0, clock=clock),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize("clock", [None, FakeClock, object(), "monotonic"])
def test_a_bad_clock_is_a_type_error_naming_it(build: Callable[[object], object], clock: object) -> None:
    with pytest.raises(TypeError, match="clock"):
        build(clock)


class MonotonicOnly:
    """Enough for a deadline: only ``monotonic()`` is read."""

    def monotonic(self) -> float:
        return 1.0


@pytest.mark.parametrize("build", BUILDERS)
def test_any_object_with_a_monotonic_method_will_do(build: Callable[[object], object]) -> None:
    build(MonotonicOnly())
    build(FakeClock())
