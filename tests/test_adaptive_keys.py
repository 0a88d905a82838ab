"""AdaptiveTimeout, production additions: per-key estimates with bounded memory, large (histogram) windows, and
the stated number of samples to follow a 3x latency step up and back down. Durations come from record() or a
FakeClock; nothing is timed for real."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

import stalwart as sw
from stalwart._adaptive import AdaptiveTimeoutKey
from stalwart._latency_window import EXACT_LIMIT
from stalwart.testing import FakeClock

FOREVER = 60.0


def step(adaptive: sw.AdaptiveTimeout, *, window: int, low: float = 2.0, key: object = None) -> tuple[int, int, int]:
    """Drive calls through a 3x step up and back down, as the policy records them (latency, or the timeout when the
    call is cut). Returns (calls cut before they succeed again, samples until the timeout is 1.5x the new latency,
    samples until it is back to 1.5x the old one)."""
    high = 3 * low

    def call(latency: float) -> bool:
        limit = adaptive.timeout_for(key)
        adaptive.record(min(latency, limit), key)
        return latency <= limit

    for _ in range(window):
        assert call(low)
    assert adaptive.timeout_for(key) == 1.5 * low
    outcomes: list[bool] = []
    while adaptive.timeout_for(key) != 1.5 * high:
        outcomes.append(call(high))
        assert len(outcomes) <= window
    failures = outcomes.index(True)
    assert outcomes == [False] * failures + [True] * (len(outcomes) - failures)
    until_success, until_settled = failures, len(outcomes)
    for _ in range(window):  # a full window at the new latency
        call(high)
    calls = 0
    while adaptive.timeout_for(key) != 1.5 * low:
        call(low)
        calls += 1
        assert calls <= window
    return until_success, until_settled, calls


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (100, (4, 6, 99)),  # the defaults: 2 samples beyond the p99 move it (window - rank)
        (1000, (22, 33, 990)),  # 11 samples move it
        (EXACT_LIMIT + 904, (102, 153, 4950)),  # 5000 samples: the histogram estimator, 51 samples move it
    ],
)
def test_follows_a_3x_step_up_and_back_down_within_the_stated_samples(
    window: int, expected: tuple[int, int, int]
) -> None:
    """Up: 2 x (window - rank) censored samples until calls succeed, 3 x (window - rank) until the timeout is 1.5x
    the new latency. Down: once at most window - rank - 1 slow samples remain, i.e. within rank + 1 samples."""
    adaptive = sw.AdaptiveTimeout(maximum=1000.0, window=window)
    rank = math.ceil(0.99 * window) - 1
    assert expected == (2 * (window - rank), 3 * (window - rank), rank + 1)
    assert step(adaptive, window=window) == expected


def test_a_key_follows_its_own_steps() -> None:
    adaptive = sw.AdaptiveTimeout(maximum=1000.0)
    assert step(adaptive, window=100, key="GET /slow") == (4, 6, 99)
    assert adaptive.timeout == 5.0  # the default key saw nothing
    assert adaptive.samples_for("GET /slow") == 100


# -- keys -----------------------------------------------------------------------------------------------------------


def test_keys_are_independent() -> None:
    adaptive = sw.AdaptiveTimeout(min_samples=1, maximum=1000.0)
    adaptive.record(2.0, "GET /a")
    adaptive.record(10.0, "GET /b")
    adaptive.record(4.0)
    assert adaptive.timeout_for("GET /a") == 3.0
    assert adaptive.timeout_for("GET /b") == 15.0
    assert adaptive.timeout == adaptive.timeout_for(None) == 6.0
    assert adaptive.timeout_for("GET /unknown") == 5.0  # initial
    assert adaptive.samples_for("GET /unknown") == 0
    assert adaptive.samples_for(None) == adaptive.samples == 1
    assert adaptive.tracked_keys == 2


def test_memory_is_bounded_by_max_keys_least_recently_recorded_first() -> None:
    adaptive = sw.AdaptiveTimeout(min_samples=1, maximum=1000.0, max_keys=2)
    adaptive.record(2.0, "a")
    adaptive.record(4.0, "b")
    adaptive.record(2.0, "a")  # a is now the most recent
    adaptive.record(8.0, "c")  # evicts b
    assert adaptive.tracked_keys == 2
    assert adaptive.samples_for("b") == 0
    assert adaptive.timeout_for("b") == 5.0
    assert adaptive.samples_for("a") == 2
    assert adaptive.timeout_for("c") == 12.0
    for i in range(1000):
        adaptive.record(1.0, i)
    assert adaptive.tracked_keys == 2
    adaptive.record(2.0)
    assert adaptive.samples == 1  # the default key is never evicted


def test_current_limit_is_not_clamped_by_the_ambient_deadline() -> None:
    clock = FakeClock()
    adaptive = sw.AdaptiveTimeout(min_samples=1, maximum=1000.0, clock=clock)
    adaptive.record(4.0, "k")
    with sw.deadline(2.0, clock=clock):
        assert adaptive.current_limit("k") == 6.0
        assert adaptive.timeout_for("k") == 2.0
        assert adaptive.for_key("k").timeout == 2.0
        assert adaptive.current_limit() == 5.0
        assert adaptive.timeout == 2.0


def test_concurrent_records_over_keys_from_threads() -> None:
    adaptive = sw.AdaptiveTimeout(window=50, maximum=1000.0, max_keys=8)

    def worker(n: int) -> None:
        for i in range(400):
            adaptive.record(float(n), i % 12)
            _ = adaptive.timeout_for(i % 12)

    threads = [threading.Thread(target=worker, args=(v,)) for v in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert adaptive.tracked_keys == 8
    for key in range(12):
        assert adaptive.samples_for(key) <= 50
        assert 1.0 <= adaptive.timeout_for(key) <= 12.0


def test_max_keys_is_validated() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        sw.AdaptiveTimeout(max_keys=0)
    with pytest.raises(TypeError, match="max_keys"):
        sw.AdaptiveTimeout(max_keys=1.5)  # type: ignore[arg-type]


# -- for_key as a policy --------------------------------------------------------------------------------------------


def exact(clock: FakeClock) -> sw.AdaptiveTimeout:
    """An estimator whose timeout is exactly the largest recorded sample."""
    return sw.AdaptiveTimeout(initial=1.0, minimum=0.001, percentile=1.0, multiplier=1.0, min_samples=1, clock=clock)


async def test_for_key_times_and_records_async_calls_under_the_key() -> None:
    clock = FakeClock()
    adaptive = exact(clock)
    users = adaptive.for_key("GET /users")
    assert isinstance(users, AdaptiveTimeoutKey)
    assert users.key == "GET /users"
    seen: list[sw.Deadline | None] = []

    async def call(duration: float) -> str:
        seen.append(sw.current_deadline())
        clock.advance(duration)
        await asyncio.sleep(0)
        return "ok"

    assert await users.run(call, 0.25) == "ok"
    assert users.samples == 1
    assert users.timeout == 0.25
    assert adaptive.samples == 0  # the default key saw nothing
    assert seen[0] is not None
    assert seen[0].at == 1.0


async def test_for_key_records_a_censored_sample_under_the_key() -> None:
    adaptive = sw.AdaptiveTimeout(initial=0.01, minimum=0.001, percentile=1.0, multiplier=2.0, min_samples=1)
    search = adaptive.for_key("search")
    with pytest.raises(sw.DeadlineExceeded):
        await search.run(asyncio.sleep, FOREVER)
    assert search.samples == 1
    assert search.timeout == 0.02
    assert adaptive.timeout == 0.01


def test_for_key_sync_and_decorator() -> None:
    clock = FakeClock()
    adaptive = exact(clock)
    reads = adaptive.for_key(("GET", "/items"))

    @reads
    def work(x: int) -> int:
        clock.advance(0.25)
        return x

    assert work(3) == 3
    assert reads.call(lambda: clock.advance(0.5)) is None
    assert reads.timeout == 0.5
    assert reads.samples == 2
    assert "for_key(('GET', '/items'))" in repr(reads)


def test_for_key_needs_a_hashable_key() -> None:
    with pytest.raises(TypeError):
        sw.AdaptiveTimeout().for_key(["not", "hashable"])


def test_sync_call_refuses_a_coroutine() -> None:
    adaptive = sw.AdaptiveTimeout()

    async def work() -> int:
        return 1

    with pytest.raises(TypeError, match="coroutine"):
        adaptive.for_key("k").call(work)  # type: ignore[arg-type]
    assert adaptive.samples_for("k") == 0
