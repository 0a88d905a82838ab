"""Cluster-wide HALF_OPEN: 4 OS processes x 200 concurrent callers against a real Redis admit exactly
``half_open_max_calls`` probes, counted at the upstream (a Redis counter each call increments before it hangs).

The fleet's breaker is opened with ``reset_timeout=0``, so probes may start at once; the upstream holds every call
it receives until the test releases it, so the HALF_OPEN period cannot end while the 800 callers keep trying. The
test waits (no timing asserted) until the probes are out and every process has since been rejected at least 1,000
more times, then stops the callers, counts, and releases the probes, whose successes close the fleet's breaker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import stalwart as sw
from stalwart.redis import RedisCircuitStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKER = Path(__file__).with_name("breaker_fleet_worker.py")
PROCESSES = 4
CONFIG = {"failure_threshold": 1, "reset_timeout": 0.0, "half_open_max_calls": 3, "success_threshold": 3}


@pytest.fixture
def client(redis_url: str, unique_prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    yield connection
    keys = list(connection.scan_iter(match=f"*{unique_prefix}*"))
    if keys:
        connection.delete(*keys)
    connection.close()


def wait_for(condition: Callable[[], bool], what: str, invariant: Callable[[], None], limit: float = 60.0) -> None:
    """Poll until ``condition()``, checking ``invariant()`` all along; ``limit`` seconds is a hang, not a timing
    assertion."""
    deadline = time.monotonic() + limit
    while not condition():
        invariant()
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)
    invariant()


def test_four_processes_of_200_callers_admit_exactly_half_open_max_calls_probes(
    redis_url: str, unique_prefix: str, client: redis.Redis
) -> None:
    prefix = unique_prefix
    store = RedisCircuitStore(client, prefix=prefix, flush_interval=None)
    breaker = sw.CircuitBreaker("upstream", store=store, **CONFIG)  # type: ignore[arg-type]
    assert store.sync()
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert store.sync()
    assert client.hget(store.keys("upstream")[0], "st") == b"open"

    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), redis_url, prefix, str(index)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(PROCESSES)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()

        def counter() -> int:
            return int(client.get(f"{prefix}:upstream") or 0)

        def rejected() -> list[int]:
            return [int(client.get(f"{prefix}:rejected:{i}") or 0) for i in range(PROCESSES)]

        def at_most_max() -> None:
            assert counter() <= CONFIG["half_open_max_calls"], "more probes reached the upstream than allowed"

        wait_for(lambda: counter() >= CONFIG["half_open_max_calls"], "the probes", at_most_max)
        since = rejected()
        wait_for(
            lambda: all(now >= before + 1000 for now, before in zip(rejected(), since, strict=True)),
            "every process to keep trying while the probes are out",
            at_most_max,
        )
        client.set(f"{prefix}:done", 1)
        wait_for(lambda: all(client.exists(f"{prefix}:idle:{i}") for i in range(PROCESSES)), "the callers", at_most_max)
        probes_at_upstream = counter()
        assert client.hget(store.keys("upstream")[0], "pr") == b"3"
        client.set(f"{prefix}:release", 1)
        summaries = []
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0
            summaries.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    assert probes_at_upstream == CONFIG["half_open_max_calls"]
    assert sum(s["probes"] for s in summaries) == CONFIG["half_open_max_calls"]
    assert all(s["rejected"] >= 1000 for s in summaries)
    assert counter() == CONFIG["half_open_max_calls"]  # nothing reached the upstream after the count either
    assert store.sync()
    assert breaker.state is sw.CircuitState.CLOSED  # the three probes succeeded: closed for the whole fleet
    store.close()
