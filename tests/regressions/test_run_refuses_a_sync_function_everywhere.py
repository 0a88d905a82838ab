"""Regression: ``await policy.run(sync_fn)`` on a lone breaker, (keyed) bulkhead, timeout or adaptive timeout.

The function ran, then Python's own ``TypeError: object int can't be used in 'await' expression`` came out, naming
neither the function nor the policy; and a lone ``CircuitBreaker`` counted it as a failure of the dependency: two
such mix-ups opened a breaker with ``failure_threshold=2`` on a healthy dependency. ``Retry``, ``Fallback`` and
``Pipeline`` already refused it with a ``MisuseError`` (a ``TypeError`` no ``on=`` matches,
test_usage_errors_not_handled_by_policies.py); every policy's ``run`` now does, and the breaker returns the permit
without an outcome.
"""

from __future__ import annotations

from typing import Any

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


def sync_fn() -> int:
    return 42


def policies() -> list[Any]:
    return [
        sw.CircuitBreaker("misused", failure_threshold=2, clock=FakeClock()),
        sw.Bulkhead("misused", max_concurrent=1),
        sw.Timeout(5.0),
        sw.AdaptiveTimeout(),
        sw.KeyedBulkhead("misused", max_per_key=1, max_concurrent=2, key=lambda: "k"),
    ]


@pytest.mark.parametrize("policy", policies(), ids=lambda p: type(p).__name__)
async def test_run_refuses_a_sync_function_naming_it(policy: Any) -> None:
    with pytest.raises(TypeError, match=r"'sync_fn' returned 'int', which is not awaitable") as info:
        await policy.run(sync_fn)
    assert type(policy).__name__ in str(info.value)
    assert isinstance(info.value.__cause__, TypeError)  # the await's own error, kept as the cause


async def test_a_breaker_does_not_count_the_mix_up() -> None:
    breaker = sw.CircuitBreaker("misused", failure_threshold=2, clock=FakeClock())
    for _ in range(5):
        with pytest.raises(TypeError):
            await breaker.run(sync_fn)  # type: ignore[arg-type]
    stats = breaker.statistics()
    assert stats.state is sw.CircuitState.CLOSED
    assert stats.failure_count == 0


async def test_a_bulkhead_gives_the_slot_back() -> None:
    bulkhead = sw.Bulkhead("misused", max_concurrent=1)
    with pytest.raises(TypeError):
        await bulkhead.run(sync_fn)  # type: ignore[arg-type]
    assert bulkhead.statistics().available == 1
    keyed = sw.KeyedBulkhead("misused", max_per_key=1, max_concurrent=2)
    with pytest.raises(TypeError, match="KeyedBulkhead"):
        await keyed.run_for("k", sync_fn)  # type: ignore[arg-type]
    assert keyed.statistics().available == 2


async def test_an_adaptive_timeout_records_no_sample() -> None:
    adaptive = sw.AdaptiveTimeout()
    with pytest.raises(TypeError):
        await adaptive.run(sync_fn)  # type: ignore[arg-type]
    assert adaptive.samples == 0


async def test_a_real_type_error_of_the_dependency_still_counts() -> None:
    breaker = sw.CircuitBreaker("real", failure_threshold=2, clock=FakeClock())

    async def broken() -> None:
        raise TypeError("the dependency's own bug")

    for _ in range(2):
        with pytest.raises(TypeError, match="own bug"):
            await breaker.run(broken)
    assert breaker.statistics().state is sw.CircuitState.OPEN
