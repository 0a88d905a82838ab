"""Regression: a ratio budget with a subnormal ``percent`` raised a bare ``OverflowError``.

What was wrong: ``RetryBudget.ratio(percent=5e-324)`` passed the range check (it is in (0, 100]), then computed the
cost of a retry, ``100_000 / percent`` units, which is infinite for a subnormal float, and ``math.ceil`` raised
``OverflowError: cannot convert float infinity to integer``, naming no parameter (the kind of fault of
``test_config_overflow_and_unvalidated_numbers.py``: bad configuration raises ``ValueError`` naming the
parameter). A percent just above that (``1e-303``) blamed ``min_per_second x ttl`` for a reserve it had made
infinite. Now the first names ``percent`` and the second names all three.
"""

from __future__ import annotations

import pytest

import stalwart as sw


@pytest.mark.parametrize("percent", [5e-324, 1e-320])
def test_a_subnormal_percent_is_a_value_error_naming_it(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        sw.RetryBudget.ratio(percent=percent)


def test_a_reserve_made_infinite_by_a_tiny_percent_names_the_percent_too() -> None:
    with pytest.raises(ValueError, match=r"min_per_second x ttl .* percent=1e-303"):
        sw.RetryBudget.ratio(percent=1e-303)


def test_a_tiny_but_countable_percent_still_works() -> None:
    budget = sw.RetryBudget.ratio(percent=1e-303, min_per_second=0)
    assert budget.try_acquire_retry() is False
    budget = sw.RetryBudget.ratio(percent=0.001)
    assert budget.try_acquire_retry() is True  # the reserve
