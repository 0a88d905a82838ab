"""RedisRetryBudget against a real Redis: a fleet's shared ratio budget, batching, staleness, outage fallback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from stalwart import Backoff, Retry, RetryBudgetStatistics
from stalwart._retry_policy import RetryBudgetHook
from stalwart.redis import RedisRetryBudget
from stalwart.testing import FakeClock

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url: str, unique_prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    yield connection
    for key in connection.scan_iter(match=f"{{{unique_prefix}*"):
        connection.delete(key)
    connection.close()


@pytest.fixture
def make(client: redis.Redis, unique_prefix: str) -> Iterator[Callable[..., RedisRetryBudget]]:
    """Budgets sharing one Redis and prefix, as processes of a fleet would; manual syncs unless asked."""
    made: list[RedisRetryBudget] = []

    def build(name: str = "payments", **kwargs: Any) -> RedisRetryBudget:
        kwargs.setdefault("sync_interval", None)
        kwargs.setdefault("prefix", unique_prefix)
        budget = RedisRetryBudget(client, name, **kwargs)
        made.append(budget)
        return budget

    yield build
    for budget in made:
        budget.close()


def window(client: redis.Redis, budget: RedisRetryBudget) -> tuple[int, int]:
    fields = {k.decode(): int(v) for k, v in client.hgetall(budget.key).items()}
    calls = sum(v for k, v in fields.items() if k.startswith("c"))
    retries = sum(v for k, v in fields.items() if k.startswith("r"))
    return calls, retries


def test_it_is_a_budget_hook_with_a_hash_tagged_prefixed_key(
    make: Callable[..., RedisRetryBudget], unique_prefix: str
) -> None:
    budget = make("inventory")
    assert isinstance(budget, RetryBudgetHook)
    assert budget.key == f"{{{unique_prefix}:inventory}}:window"
    assert budget.statistics() == RetryBudgetStatistics("inventory", "ratio", 100, True, 0, 0)  # 10/s x 10 s
    assert not budget.shared  # until the first sync


def test_the_success_path_makes_no_round_trip_and_a_sync_sends_the_batch(
    make: Callable[..., RedisRetryBudget], client: redis.Redis
) -> None:
    budget = make()
    for _ in range(1000):
        budget.record_success(True)
        budget.record_success(False)  # only a call's first attempt counts
    assert client.exists(budget.key) == 0  # nothing sent yet
    assert budget.sync()
    assert window(client, budget) == (1000, 0)
    ttl_ms = client.pttl(budget.key)
    assert 0 < ttl_ms <= 10_000  # an idle budget leaves nothing behind
    assert budget.sync()  # nothing new: nothing added
    assert window(client, budget) == (1000, 0)


def test_processes_share_one_budget(make: Callable[..., RedisRetryBudget], client: redis.Redis) -> None:
    a = make(percent=20.0, min_per_second=0)
    b = make(percent=20.0, min_per_second=0)
    for _ in range(100):
        a.record_failure(True)
    assert a.sync()
    assert b.sync()
    assert b.shared
    # b made no call itself, but the fleet made 100: 20 retries for the whole fleet.
    granted = sum(b.try_acquire_retry() for _ in range(30))
    assert granted == 20
    assert b.sync()
    assert window(client, b) == (100, 20)
    # a learns of b's retries at its next sync: the fleet's budget is spent.
    assert a.sync()
    assert not a.try_acquire_retry()
    assert b.statistics().balance == 0


def test_staleness_is_bounded_by_one_sync(make: Callable[..., RedisRetryBudget]) -> None:
    a = make(percent=10.0, min_per_second=0)
    b = make(percent=10.0, min_per_second=0)
    for _ in range(100):
        a.record_success(True)
    a.sync()
    b.sync()
    # Both saw the same allowance (10) and neither has heard of the other's retries since: each may spend it once.
    assert sum(a.try_acquire_retry() for _ in range(20)) == 10
    assert sum(b.try_acquire_retry() for _ in range(20)) == 10
    a.sync()
    b.sync()
    assert not a.try_acquire_retry()
    assert not b.try_acquire_retry()


def test_a_process_counts_its_own_activity_between_syncs(make: Callable[..., RedisRetryBudget]) -> None:
    budget = make(percent=50.0, min_per_second=0)
    budget.sync()
    for _ in range(4):
        budget.record_failure(True)
    assert [budget.try_acquire_retry() for _ in range(3)] == [True, True, False]  # 4 calls x 50 % = 2 retries


def test_expired_and_unknown_slices_are_dropped(make: Callable[..., RedisRetryBudget], client: redis.Redis) -> None:
    budget = make()
    client.hset(budget.key, mapping={"c1": 999, "r1": 999, "c99999999999999": 5, "junk": 7})
    budget.record_success(True)
    assert budget.sync()
    assert window(client, budget) == (1, 0)
    assert {k.decode()[0] for k in client.hkeys(budget.key)} == {"c"}


def test_with_a_retry_the_fleet_load_stays_within_the_ratio(make: Callable[..., RedisRetryBudget]) -> None:
    budget = make(percent=20.0, min_per_second=0)
    budget.sync()
    attempts = 0

    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    retry = Retry(on=ConnectionError, max_attempts=3, backoff=Backoff.constant(0.0), budget=budget, clock=FakeClock())
    for _ in range(100):
        with pytest.raises(ConnectionError):
            retry.call(down)
    assert attempts <= 120  # without the budget: 300


def test_concurrent_counts_are_never_lost_or_doubled(
    make: Callable[..., RedisRetryBudget], client: redis.Redis
) -> None:
    budget = make(percent=100.0, min_per_second=0)
    budget.sync()
    stop = threading.Event()
    granted = [0] * 4

    def worker(index: int) -> None:
        for _ in range(2000):
            budget.record_success(True)
            if budget.try_acquire_retry():
                granted[index] += 1

    def syncer() -> None:
        while not stop.is_set():
            budget.sync()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    background = threading.Thread(target=syncer)
    background.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    background.join()
    budget.sync()
    assert window(client, budget) == (8000, sum(granted))
    assert budget.statistics().granted == sum(granted)


# ------------------------------------------------------------------ the background thread and the lifecycle


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition that a background thread will make true (no timing is asserted; 30 s is a hang)."""
    limit = time.monotonic() + 30.0
    while not condition():
        assert time.monotonic() < limit, "the background sync never happened"
        time.sleep(0.01)


def test_the_thread_syncs_a_granted_retry_and_the_last_counts_on_close(
    make: Callable[..., RedisRetryBudget], client: redis.Redis
) -> None:
    budget = make(sync_interval=3600.0)  # only the start, a granted retry and close() make it sync
    wait_until(lambda: budget.shared)
    budget.record_failure(True)
    assert budget.try_acquire_retry()
    wait_until(lambda: window(client, budget) == (1, 1))
    for _ in range(5):
        budget.record_success(True)
    budget.close()
    assert window(client, budget) == (6, 1)
    assert not any(t.name == "stalwart-budget-payments" for t in threading.enumerate())
    budget.close()  # idempotent


def test_from_url_owns_its_client_and_a_given_client_is_left_open(
    redis_url: str, unique_prefix: str, client: redis.Redis, make: Callable[..., RedisRetryBudget]
) -> None:
    closed: list[str] = []
    with RedisRetryBudget.from_url(redis_url, "owned", prefix=unique_prefix, sync_interval=None) as budget:
        real_close = budget._client.close
        budget._client.close = lambda: (closed.append("owned"), real_close())  # type: ignore[method-assign]
        budget.record_success(True)
        assert budget.sync()
    assert window(client, budget) == (1, 0)  # the last sync at close
    assert closed == ["owned"]
    borrowed = make("borrowed")
    client.close = lambda: closed.append("borrowed")  # type: ignore[method-assign]
    try:
        borrowed.close()
    finally:
        del client.close
    assert closed == ["owned"]


# ------------------------------------------------------------------ outage: a local budget, logged once


def test_unreachable_redis_falls_back_to_a_local_budget_logged_once(
    caplog: pytest.LogCaptureFixture, unique_prefix: str
) -> None:
    clock = FakeClock()
    budget = RedisRetryBudget.from_url(
        "redis://127.0.0.1:1/0",
        "offline",
        prefix=unique_prefix,
        percent=50.0,
        min_per_second=0,
        sync_interval=None,
        clock=clock,
    )
    try:
        with caplog.at_level(logging.INFO, logger="stalwart"):
            for _ in range(10):
                budget.record_failure(True)
            assert not budget.sync()
            assert not budget.sync()
            assert not budget.shared
            assert sum(budget.try_acquire_retry() for _ in range(10)) == 5  # this process's 10 calls x 50 %
            clock.advance(10.0)  # the local window forgets them
            assert not budget.try_acquire_retry()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "cannot reach Redis" in warnings[0].getMessage()
    finally:
        budget.close()


def test_a_recovered_redis_is_used_again_and_logged_once(
    make: Callable[..., RedisRetryBudget], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = make()
    real = budget._script

    def broken(**kwargs: Any) -> Any:
        raise RedisConnectionError("connection reset")

    with caplog.at_level(logging.INFO, logger="stalwart"):
        assert budget.sync()
        monkeypatch.setattr(budget, "_script", broken)
        assert not budget.sync()
        assert not budget.sync()
        monkeypatch.setattr(budget, "_script", real)
        assert budget.sync()
        assert budget.shared
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot reach Redis" in m for m in messages) == 1
    assert sum("reaches Redis again" in m for m in messages) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "a{b"}, ValueError, "name"),
        ({"name": ""}, ValueError, "name"),
        ({"prefix": "p}"}, ValueError, "prefix"),
        ({"percent": 0}, ValueError, "percent"),
        ({"ttl": 0}, ValueError, "ttl"),
        ({"min_per_second": -1}, ValueError, "min_per_second"),
        ({"sync_interval": 0}, ValueError, "sync_interval"),
        ({"clock": object()}, TypeError, "clock"),
    ],
)
def test_invalid_configuration_names_the_parameter(
    client: redis.Redis, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    kwargs.setdefault("sync_interval", None)
    with pytest.raises(error, match=match):
        RedisRetryBudget(client, **kwargs)


def test_an_asyncio_client_is_refused() -> None:
    with pytest.raises(TypeError, match="synchronous"):
        RedisRetryBudget(redis.asyncio.Redis(), sync_interval=None)  # type: ignore[arg-type]
