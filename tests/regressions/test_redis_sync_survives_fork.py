"""Regression: the Redis-backed objects of ``stalwart.redis`` (:class:`~stalwart.redis.RedisRetryBudget`,
:class:`~stalwart.redis.RedisCircuitStore`) created before ``fork`` (gunicorn ``--preload``, a multiprocessing pool,
Celery's prefork workers) were silently broken in every child.

What was wrong (the fault OpenTelemetry's BatchSpanProcessor (opentelemetry-python #2242), Sentry's batcher
(sentry-python #6163) and Datadog's flush threads (dd-trace-rb #6158) had and fixed). The budget was fixed first, on
its own; the circuit store, built on the same background sync thread, kept every fault:

* the sync thread does not survive ``fork``: the child never synced again. A child's budget decided forever from the
  parent's last fleet totals plus its own counts, which no window ever expired. A child's breakers never heard of
  the fleet again (a trip elsewhere, the end of an open period: a breaker OPEN at the fork waited for a probe
  permit for ever), the fleet never heard of them (a local trip, outcomes), and their batch of outcomes grew
  without bound; ``close()`` did not even send the last counts;
* a lock held by the parent's sync thread at the moment of the fork (the budget's around every count update, the
  store's and each breaker's around every sync of it, the one around a whole round trip) stayed held in the child:
  its next call through the breaker, ``try_acquire_retry`` or ``sync()`` blocked forever, on the request path;
* what the parent had not sent yet at the fork was in the child's copy as well, and each child sent it again:
  counts and outcomes counted once per process, probe permits the parent held used by every child too (more probes
  than ``half_open_max_calls``).

The re-initialisation is now part of the shared machinery (``stalwart.redis._common.SyncThread``), so every object
with a sync thread gets it: before the fork the short locks (no I/O under them) are taken, so that the child gets a
consistent copy with them free; in the child the lock held through a round trip is new, what the parent had not
sent is dropped (the parent sends it, once), and a new thread starts when the object had one.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

import stalwart as sw
from stalwart.redis import RedisCircuitStore, RedisRetryBudget
from stalwart.testing import FakeClock

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork"),
]

OPEN = sw.CircuitState.OPEN
HALF_OPEN = sw.CircuitState.HALF_OPEN


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


@pytest.fixture
def client(redis_url: str, unique_prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    yield connection
    for key in connection.scan_iter(match=f"{{{unique_prefix}*"):
        connection.delete(key)
    connection.close()


def in_child(work: Callable[[], object], timeout: float = 20.0) -> object:
    """Run ``work`` in a forked child; its JSON result, or ``"hung"`` when it does not answer within ``timeout``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            payload = json.dumps({"result": work()})
        except BaseException as exc:
            payload = json.dumps({"error": repr(exc)})
        os.write(write, payload.encode())
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return "hung"
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    answer = json.loads(b"".join(chunks))
    assert "error" not in answer, answer["error"]
    return answer["result"]


# A lock "held by the sync thread at the fork" is held by a thread of the test's. The short ones are let go when
# the fork begins (this hook, registered after stalwart's, runs before them): a fork that waits for them gives the
# child free locks; one that does not (without the fix: no hook waits) copies them held.
_AT_FORK: list[threading.Event] = []


def _let_go_at_fork() -> None:
    for event in _AT_FORK:
        event.set()


os.register_at_fork(before=_let_go_at_fork)


@contextmanager
def held_by_another_thread(*, through_the_fork: list[Any], until_the_fork: list[Any]) -> Iterator[None]:
    """Another thread holds ``through_the_fork`` (as a sync thread does during a round trip) until the block ends,
    and ``until_the_fork`` (as it does for an instant around each update) until a fork begins."""
    holding, fork_begins, done = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        for lock in through_the_fork:
            lock.acquire()
        for lock in until_the_fork:
            lock.acquire()
        holding.set()
        fork_begins.wait()
        for lock in reversed(until_the_fork):
            lock.release()
        done.wait()
        for lock in reversed(through_the_fork):
            lock.release()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    holding.wait()
    _AT_FORK.append(fork_begins)
    try:
        yield
    finally:
        _AT_FORK.remove(fork_begins)
        fork_begins.set()
        done.set()
        thread.join()


def call(breaker: Any, fn: Callable[[], Any]) -> str:
    try:
        return str(breaker.call(fn))
    except Boom:
        return "failed"
    except sw.CircuitOpenError:
        return "rejected"


def fleet_state(client: redis.Redis, store: RedisCircuitStore, name: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(store.keys(name)[0]).items()}


# ------------------------------------------------------------------ RedisCircuitStore


def test_a_child_store_syncs_with_its_own_thread(client: redis.Redis, unique_prefix: str) -> None:
    store = RedisCircuitStore(client, prefix=unique_prefix, flush_interval=3600.0)
    breaker = sw.CircuitBreaker("forked", store=store, failure_threshold=3, reset_timeout=1e6, clock=FakeClock())
    try:
        assert store.sync()

        def child() -> object:
            outcomes = [call(breaker, boom) for _ in range(3)]  # a local trip: proposed to the fleet at once
            store.close()  # stops the child's thread after a last sync
            return [*outcomes, breaker.state.value]

        assert in_child(child) == ["failed", "failed", "failed", "open"]
        assert fleet_state(client, store, "forked")["st"] == "open"  # the child's trip reached the fleet
        assert store.sync()
        assert breaker.state is OPEN
    finally:
        store.close()


def test_a_child_store_hears_of_the_fleet(client: redis.Redis, unique_prefix: str) -> None:
    store = RedisCircuitStore(client, prefix=unique_prefix, flush_interval=3600.0)
    breaker = sw.CircuitBreaker("forked", store=store, failure_threshold=1, reset_timeout=0.0, clock=FakeClock())
    try:
        assert store.sync()
        call(breaker, boom)
        assert store.sync()
        assert breaker.state is OPEN  # the fleet's: its open period is over, a probe is asked of the fleet

        def child() -> object:
            first = call(breaker, lambda: "ok")  # rejected: asks the fleet for a probe permit (wakes the thread)
            store.close()  # the child's thread asks, then stops
            return [first, breaker.state.value]

        assert in_child(child) == ["rejected", "half_open"]
        assert fleet_state(client, store, "forked")["pr"] == "1"  # the fleet granted the child a permit
    finally:
        store.close()


def test_the_parents_unsent_outcomes_are_not_sent_again_by_each_child(client: redis.Redis, unique_prefix: str) -> None:
    store = RedisCircuitStore(client, prefix=unique_prefix, flush_interval=None)
    breaker = sw.CircuitBreaker("forked", store=store, window=sw.CountWindow(1000), clock=FakeClock())
    try:
        assert store.sync()
        for _ in range(100):
            call(breaker, lambda: "ok")

        def child() -> object:
            call(breaker, lambda: "ok")
            return store.sync()

        assert in_child(child) is True
        assert in_child(child) is True
        assert fleet_state(client, store, "forked")["wc"] == "2"  # one call per child, nothing of the parent's
        assert store.sync()
        assert fleet_state(client, store, "forked")["wc"] == "102"
    finally:
        store.close()


def test_the_parents_probe_permits_are_not_used_by_a_child(client: redis.Redis, unique_prefix: str) -> None:
    store = RedisCircuitStore(client, prefix=unique_prefix, flush_interval=None)
    config = {"failure_threshold": 1, "reset_timeout": 0.0, "half_open_max_calls": 1, "success_threshold": 1}
    breaker = sw.CircuitBreaker("forked", store=store, clock=FakeClock(), **config)
    try:
        assert store.sync()
        call(breaker, boom)
        assert store.sync()
        assert call(breaker, lambda: "ok") == "rejected"  # asks for the fleet's one permit
        assert store.sync()
        assert breaker.state is HALF_OPEN  # and holds it, unused

        def child() -> object:
            return call(breaker, lambda: "ok")

        assert in_child(child) == "rejected"  # the parent's permit, not the child's
        assert call(breaker, lambda: "ok") == "ok"  # the one probe the fleet allowed
    finally:
        store.close()


def test_locks_held_at_the_fork_do_not_block_a_child_store(client: redis.Redis, unique_prefix: str) -> None:
    store = RedisCircuitStore(client, prefix=unique_prefix, flush_interval=None)
    breaker = sw.CircuitBreaker("forked", store=store, failure_threshold=5, clock=FakeClock())
    try:
        assert store.sync()

        def child() -> object:
            return [call(breaker, lambda: "ok"), store.sync(), store.connected, breaker.statistics().state.value]

        # What a sync holds: the round's lock through the round trip; the store's and the breaker's for an instant.
        with held_by_another_thread(
            through_the_fork=[store._sync_lock], until_the_fork=[store._lock, breaker._lock, store._outage._lock]
        ):
            answer = in_child(child, timeout=5.0)
        assert answer == ["ok", True, True, "closed"]
    finally:
        store.close()


# ------------------------------------------------------------------ RedisRetryBudget


def window(client: redis.Redis, budget: RedisRetryBudget) -> tuple[int, int]:
    fields = {k.decode(): int(v) for k, v in client.hgetall(budget.key).items()}
    return sum(v for k, v in fields.items() if k[0] == "c"), sum(v for k, v in fields.items() if k[0] == "r")


def test_a_child_budget_syncs_its_own_counts_with_its_own_thread(client: redis.Redis, unique_prefix: str) -> None:
    budget = RedisRetryBudget(client, "forked", prefix=unique_prefix, sync_interval=3600.0)
    try:
        assert budget.sync()

        def child() -> object:
            for _ in range(7):
                budget.record_success(True)
            budget.close()  # stops the child's thread after a last sync
            return True

        assert in_child(child) is True
        assert window(client, budget) == (7, 0)  # the child's calls reached the fleet
    finally:
        budget.close()


def test_the_parents_unsent_counts_are_not_sent_again_by_each_child(client: redis.Redis, unique_prefix: str) -> None:
    budget = RedisRetryBudget(client, "forked", prefix=unique_prefix, sync_interval=None)
    try:
        for _ in range(100):
            budget.record_success(True)
        assert budget.try_acquire_retry()

        def child() -> object:
            budget.record_success(True)
            return budget.sync()

        assert in_child(child) is True
        assert in_child(child) is True
        assert window(client, budget) == (2, 0)  # one call per child, nothing of the parent's
        assert budget.sync()
        assert window(client, budget) == (102, 1)
    finally:
        budget.close()


def test_locks_held_at_the_fork_do_not_block_a_child_budget(client: redis.Redis, unique_prefix: str) -> None:
    budget = RedisRetryBudget(client, "forked", prefix=unique_prefix, sync_interval=None)
    try:
        assert budget.sync()

        def child() -> object:
            budget.record_success(True)
            return [budget.try_acquire_retry(), budget.sync(), budget.statistics().retries_allowed]

        # What the sync thread holds: the round's lock through the round trip, the counts' lock for an instant.
        with held_by_another_thread(through_the_fork=[budget._sync_lock], until_the_fork=[budget._lock]):
            answer = in_child(child, timeout=5.0)
        assert answer == [True, True, True]
    finally:
        budget.close()
