"""Regression: the Redis-backed breaker store and retry budget turned durations into milliseconds with
``round(seconds * 1000)``, so a long but legal duration raised ``OverflowError`` far from its cause.

What was wrong (the same class as the idempotency stores' durations, test_idem_store_durations_out_of_range.py):

* A breaker on a :class:`~stalwart.redis.RedisCircuitStore` with ``max_half_open_wait=1e308`` could not be built
  (``OverflowError`` while the store attached it); with ``reset_timeout=1e308`` it was built, and every sync after it
  opened raised ``OverflowError`` (not one of the errors a sync treats as an outage), so the fleet never heard of
  the opening. A local breaker takes both values: they mean "stay open / half-open practically forever".
* ``RedisCircuitStore(ttl=1e308)``, ``RedisCircuitStore(probe_lease=1e308)`` and ``RedisRetryBudget(ttl=1e308)``:
  ``OverflowError`` at construction (or at the first sync) instead of a ``ValueError`` naming the parameter.

The breaker's own durations are now sent as at most 2**52 ms (about 142,700 years: "forever" either way, and a
count the scripts' Lua numbers add to the server time exactly); the stores' own parameters past that are refused
with a ``ValueError`` naming them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

import stalwart as sw
from stalwart.redis import RedisCircuitStore, RedisRetryBudget
from stalwart.testing import FakeClock

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url: str, unique_prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    yield connection
    for key in connection.scan_iter(match=f"{{{unique_prefix}*"):
        connection.delete(key)
    connection.close()


@pytest.mark.parametrize("setting", ["reset_timeout", "max_half_open_wait"])
def test_a_breaker_with_a_practically_endless_period_is_shared_by_the_fleet(
    client: redis.Redis, unique_prefix: str, setting: str
) -> None:
    stores = [RedisCircuitStore(client, prefix=unique_prefix, flush_interval=None) for _ in range(2)]
    try:
        config = {"failure_threshold": 1, setting: 1e308}
        first, second = (sw.CircuitBreaker("payments", store=s, clock=FakeClock(), **config) for s in stores)
        first.record_failure(first.acquire())
        assert first.state is sw.CircuitState.OPEN
        for _ in range(2):  # every process hears of every other's news
            assert all(store.sync() for store in stores)
        assert second.state is sw.CircuitState.OPEN
        with pytest.raises(sw.CircuitOpenError):
            second.acquire()
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("parameter", ["ttl", "probe_lease"])
def test_breaker_store_durations_its_scripts_cannot_hold_are_refused(parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        RedisCircuitStore(redis.Redis(), flush_interval=None, **{parameter: 1e308})
    with pytest.raises(ValueError, match=parameter):
        RedisCircuitStore(redis.Redis(), flush_interval=None, **{parameter: 2**52 / 1000 + 1})


def test_budget_window_its_script_cannot_hold_is_refused() -> None:
    for ttl in (1e308, 2**52 / 1000 + 1):
        with pytest.raises(ValueError, match="ttl"):
            RedisRetryBudget(redis.Redis(), name="payments", ttl=ttl, sync_interval=None)
