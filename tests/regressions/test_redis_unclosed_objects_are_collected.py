"""Regression: a :class:`~stalwart.redis.RedisRetryBudget` or :class:`~stalwart.redis.RedisCircuitStore` never
closed kept its sync thread and its connection for the life of the process.

What was wrong: the sync thread held its owner's ``sync`` method, a strong reference, so an owner nobody used any
more (a budget built per request or per test, a store replaced by a new one) was never garbage-collected; its thread
went on syncing every interval and its client (``from_url``'s own) stayed connected. The thread now holds its owner
weakly: once the owner is collected the thread ends and the client the owner owns is closed. ``close()`` stays the
explicit way (it also sends the last counts, which a collected owner cannot).

A store lives as long as a breaker attached to it: the breaker needs it to stay in step with the fleet.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

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


def sockets(client: redis.Redis) -> list[Any]:
    """The sockets of the client's connections (held here, they show whether anyone closed them)."""
    pool = client.connection_pool
    every = [*pool._available_connections, *pool._in_use_connections]
    return [connection._sock for connection in every if connection._sock is not None]


def all_closed(held: list[Any]) -> bool:
    return all(sock.fileno() == -1 for sock in held)


def collect(ref: weakref.ref[Any], thread: threading.Thread | None) -> bool:
    """Whether the object of ``ref`` is collected (nothing else refers to it) once its thread's round in progress,
    if any, has ended: the thread holds its owner for the length of a round. Gives up after about 5 s."""
    for _ in range(100):
        gc.collect()
        if ref() is None:
            return True
        if thread is not None:
            thread.join(timeout=0.05)
    return False


@pytest.mark.parametrize("interval", [3600.0, None])
def test_an_unclosed_budget_is_collected_and_its_thread_ends(
    client: redis.Redis, unique_prefix: str, interval: Any
) -> None:
    budget = RedisRetryBudget(client, "unclosed", prefix=unique_prefix, sync_interval=interval)
    assert budget.try_acquire_retry()
    thread, ref = budget._thread._thread, weakref.ref(budget)
    del budget
    assert collect(ref, thread)
    if thread is not None:
        thread.join(timeout=10.0)
        assert not thread.is_alive()


@pytest.mark.parametrize("interval", [3600.0, None])
def test_an_unclosed_budget_from_url_closes_its_connection(redis_url: str, unique_prefix: str, interval: Any) -> None:
    budget = RedisRetryBudget.from_url(redis_url, "unclosed", prefix=unique_prefix, sync_interval=interval)
    assert budget.sync()
    held = sockets(budget._client)
    assert held
    thread, ref = budget._thread._thread, weakref.ref(budget)
    del budget
    assert collect(ref, thread)
    if thread is not None:
        thread.join(timeout=10.0)
    assert all_closed(held)


def test_an_unclosed_store_is_collected_with_its_breakers(client: redis.Redis, unique_prefix: str) -> None:
    store = RedisCircuitStore(client, prefix=unique_prefix, flush_interval=3600.0)
    breaker = sw.CircuitBreaker("unclosed", store=store, clock=FakeClock())
    assert breaker.call(lambda: "ok") == "ok"
    thread = store._thread._thread
    assert thread is not None
    store_ref = weakref.ref(store)
    del store
    gc.collect()
    assert store_ref() is not None  # the breaker still needs it
    assert thread.is_alive()
    del breaker
    assert collect(store_ref, thread)
    thread.join(timeout=10.0)
    assert not thread.is_alive()


def test_an_unclosed_store_from_url_closes_its_connection(redis_url: str, unique_prefix: str) -> None:
    store = RedisCircuitStore.from_url(redis_url, prefix=unique_prefix, flush_interval=3600.0)
    breaker = sw.CircuitBreaker("unclosed", store=store, clock=FakeClock())
    assert store.sync()
    held = sockets(store._client)
    assert held
    thread, ref = store._thread._thread, weakref.ref(store)
    assert thread is not None
    del breaker, store
    assert collect(ref, thread)
    thread.join(timeout=10.0)
    assert not thread.is_alive()
    assert all_closed(held)


def test_close_stays_the_explicit_way(client: redis.Redis, unique_prefix: str) -> None:
    budget = RedisRetryBudget(client, "closed", prefix=unique_prefix, sync_interval=3600.0)
    thread = budget._thread._thread
    assert thread is not None
    for _ in range(3):
        budget.record_success(True)
    budget.close()  # a last sync, then the thread ends
    assert not thread.is_alive()
    assert sum(int(v) for k, v in client.hgetall(budget.key).items() if k.startswith(b"c")) == 3
