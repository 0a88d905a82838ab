"""Regression: a :class:`~stalwart.redis.RedisRetryBudget` created before ``fork`` (gunicorn ``--preload``, a
multiprocessing pool, Celery's prefork workers) was silently broken in every child.

What was wrong (the fault OpenTelemetry's BatchSpanProcessor (opentelemetry-python #2242), Sentry's batcher
(sentry-python #6163) and Datadog's flush threads (dd-trace-rb #6158) had and fixed):

* the sync thread does not survive ``fork``: the child never synced again, so it decided forever from the
  parent's last fleet totals plus its own counts, which no window ever expired (a budget without a window);
  its ``close()`` did not even send its last counts;
* a lock held by the parent's sync thread at the moment of the fork (it holds one around every count update)
  stayed held in the child: its next ``try_acquire_retry`` blocked forever, on the request path;
* the parent's counts not yet synced at the fork were in the child's budget as well, and each child sent them
  again: counted once per process.

A budget now re-initialises itself in the child (``os.register_at_fork``): new locks, the parent's unsent counts
and local window dropped (the parent sends its own), and a new sync thread when the parent's budget had one.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
from collections.abc import Callable, Iterator

import pytest
import redis

from stalwart.redis import RedisRetryBudget

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork"),
]


@pytest.fixture
def client(redis_url: str, unique_prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    yield connection
    for key in connection.scan_iter(match=f"{{{unique_prefix}*"):
        connection.delete(key)
    connection.close()


def window(client: redis.Redis, budget: RedisRetryBudget) -> tuple[int, int]:
    fields = {k.decode(): int(v) for k, v in client.hgetall(budget.key).items()}
    return sum(v for k, v in fields.items() if k[0] == "c"), sum(v for k, v in fields.items() if k[0] == "r")


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


def test_a_child_syncs_its_own_counts_with_its_own_thread(client: redis.Redis, unique_prefix: str) -> None:
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


def test_a_lock_held_at_the_fork_does_not_block_the_child(client: redis.Redis, unique_prefix: str) -> None:
    budget = RedisRetryBudget(client, "forked", prefix=unique_prefix, sync_interval=None)
    try:
        assert budget.sync()

        def child() -> object:
            budget.record_success(True)
            return [budget.try_acquire_retry(), budget.sync(), budget.statistics().retries_allowed]

        # What the sync thread holds for an instant at every count update, and through a round trip.
        with budget._lock, budget._sync_lock:
            answer = in_child(child, timeout=5.0)
        assert answer == [True, True, True]
    finally:
        budget.close()
