"""RedisCircuitStore against a real Redis: breakers shared by "processes" (one store and breaker each, manual syncs).

Each ``Fleet`` member stands for one process: its own store (with ``flush_interval=None``, synced by the test) and
its own ``CircuitBreaker`` of the same name. Open periods are 0 (a probe may start at once) or very long (never),
so nothing here waits for time to pass.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

import stalwart as sw
from stalwart._windows import CountAggregator
from stalwart.redis import RedisCircuitStore
from stalwart.testing import FakeClock

pytestmark = pytest.mark.integration

CLOSED = sw.CircuitState.CLOSED
OPEN = sw.CircuitState.OPEN
HALF_OPEN = sw.CircuitState.HALF_OPEN


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def ok() -> str:
    return "ok"


@pytest.fixture
def client(redis_url: str, unique_prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    yield connection
    for key in connection.scan_iter(match=f"{{{unique_prefix}*"):
        connection.delete(key)
    connection.close()


class Fleet:
    """Stores and breakers standing for processes sharing one Redis and prefix."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.stores: list[RedisCircuitStore] = []

    def store(self, **kwargs: Any) -> RedisCircuitStore:
        kwargs.setdefault("flush_interval", None)
        store = RedisCircuitStore(self.client, prefix=self.prefix, **kwargs)
        self.stores.append(store)
        return store

    def breaker(self, name: str = "payments", *, store: RedisCircuitStore | None = None, **config: Any) -> Any:
        config.setdefault("clock", FakeClock())
        return sw.CircuitBreaker(name, store=store or self.store(), **config)

    def sync(self) -> None:
        """One sync of every process, in order: a later process hears of an earlier one's news at once."""
        for store in self.stores:
            assert store.sync()

    def settle(self) -> None:
        """Two rounds: every process has heard of every other's news."""
        self.sync()
        self.sync()

    def state(self, name: str = "payments") -> dict[str, str]:
        key = self.stores[0].keys(name)[0]
        return {k.decode(): v.decode() for k, v in self.client.hgetall(key).items()}

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def fleet(client: redis.Redis, unique_prefix: str) -> Iterator[Fleet]:
    members = Fleet(client, unique_prefix)
    yield members
    members.close()


def call(breaker: Any, fn: Callable[[], Any]) -> str:
    """Call through the breaker; the outcome as a word."""
    try:
        fn_result = breaker.call(fn)
    except Boom:
        return "failed"
    except sw.CircuitOpenError:
        return "rejected"
    return str(fn_result)


# ------------------------------------------------------------------ layout


def test_keys_are_prefixed_and_hash_tagged_in_one_slot(fleet: Fleet, unique_prefix: str) -> None:
    store = fleet.store()
    breaker = fleet.breaker("http:https://api.example.com:443", window=sw.CountWindow(10), store=store)
    fleet.sync()
    call(breaker, boom)
    fleet.sync()
    state_key, window_key = store.keys(breaker.name)
    assert state_key == f"{{{unique_prefix}:http:https://api.example.com:443}}:state"
    assert window_key.endswith("}:window")
    assert key_slot(state_key.encode()) == key_slot(window_key.encode())
    assert fleet.client.exists(state_key, window_key) == 2
    assert 0 < fleet.client.pttl(state_key) <= 86_400_000  # an unused breaker leaves nothing behind


def test_the_closed_path_makes_no_round_trip(fleet: Fleet) -> None:
    breaker = fleet.breaker(window=sw.CountWindow(100))
    fleet.sync()
    for _ in range(50):
        assert call(breaker, ok) == "ok"
    assert fleet.state()["wc"] == "0"  # nothing sent before a sync
    fleet.sync()
    assert fleet.state()["wc"] == "50"


# ------------------------------------------------------------------ tripping together


def test_one_replica_trips_and_the_others_stop_calling(fleet: Fleet) -> None:
    a = fleet.breaker(failure_threshold=3, reset_timeout=1e6)
    b = fleet.breaker(failure_threshold=3, reset_timeout=1e6)
    fleet.sync()
    for _ in range(3):
        assert call(a, boom) == "failed"
    assert a.state is OPEN  # at once, locally
    assert call(b, ok) == "ok"  # b has not heard yet (staleness: one sync)
    fleet.sync()
    assert b.state is OPEN
    assert call(b, ok) == "rejected"
    assert fleet.state()["st"] == "open"
    assert fleet.state()["rs"] == "consecutive_failures"
    retry_after = b.statistics().retry_after
    assert retry_after is not None
    assert retry_after > 1e5


def test_consecutive_failures_add_up_across_processes(fleet: Fleet) -> None:
    a = fleet.breaker(failure_threshold=4, reset_timeout=1e6)
    b = fleet.breaker(failure_threshold=4, reset_timeout=1e6)
    fleet.sync()
    for _ in range(2):
        call(a, boom)
        call(b, boom)
    assert a.state is CLOSED
    assert b.state is CLOSED
    fleet.settle()
    assert a.state is OPEN
    assert b.state is OPEN
    assert fleet.state()["rs"] == "consecutive_failures"


def test_a_success_anywhere_resets_the_fleets_run(fleet: Fleet) -> None:
    a = fleet.breaker(failure_threshold=3, reset_timeout=1e6)
    b = fleet.breaker(failure_threshold=3, reset_timeout=1e6)
    fleet.sync()
    call(a, boom)
    call(a, boom)
    fleet.stores[0].sync()
    assert fleet.state()["cn"] == "2"
    call(b, ok)
    call(b, boom)
    fleet.stores[1].sync()  # the batch ends with one failure after a success: the fleet's run is 1
    assert fleet.state()["cn"] == "1"
    call(b, boom)
    fleet.settle()
    assert fleet.state()["cn"] == "2"  # without the reset: 4, open
    assert a.state is CLOSED
    assert b.state is CLOSED


def test_the_fleets_failure_rate_opens_every_process(fleet: Fleet) -> None:
    config = {"window": sw.CountWindow(10), "minimum_calls": 10, "failure_rate_threshold": 50.0}
    members = [fleet.breaker(reset_timeout=1e6, **config) for _ in range(3)]
    fleet.sync()
    for breaker in members:  # each process: 2 successes, 1 failure (33 %: none trips alone)
        call(breaker, ok)
        call(breaker, boom)
        call(breaker, ok)
    fleet.sync()
    assert {b.state for b in members} == {CLOSED}
    assert fleet.state()["wc"] == "9"
    call(members[0], boom)
    call(members[1], boom)  # window of 10 fleet calls: 5 failures
    fleet.sync()
    fleet.sync()
    assert {b.state for b in members} == {OPEN}
    state = fleet.state()
    assert (state["rs"], float(state["rt"])) == ("failure_rate", 50.0)
    stats = members[2].statistics()
    assert (stats.calls, stats.failure_count, stats.failure_rate) == (10, 5, 50.0)


def test_the_count_window_in_redis_matches_a_local_window(fleet: Fleet) -> None:
    """One process, random outcomes, syncs at random points: Redis's ring holds exactly the local window."""
    rng = random.Random(1234)
    size = 7
    breaker = fleet.breaker(window=sw.CountWindow(size), failure_rate_threshold=100.0, minimum_calls=1000)
    reference = CountAggregator(size)
    fleet.sync()
    for step in range(400):
        failed = rng.random() < 0.3
        reference.record(0.0, 1 if failed else 0)
        call(breaker, boom if failed else ok)
        if rng.random() < 0.2 or step == 399:
            fleet.sync()
            state = fleet.state()
            assert (int(state["wc"]), int(state["wf"])) == (reference.calls, reference.failures), step
    assert breaker.state is CLOSED


def test_the_time_window_counts_on_the_servers_clock(fleet: Fleet) -> None:
    config = {"window": sw.TimeWindow(60), "minimum_calls": 4, "slow_call_duration": 1.0}
    clock = FakeClock()
    a = fleet.breaker(reset_timeout=1e6, clock=clock, slow_call_rate_threshold=50.0, **config)
    fleet.sync()

    def slow() -> str:
        clock.advance(2.0)
        return "ok"

    call(a, ok)
    call(a, slow)
    call(a, ok)
    fleet.sync()
    assert a.state is CLOSED
    call(a, slow)  # 2 slow of 4: 50 %
    fleet.sync()
    assert a.state is OPEN
    assert fleet.state()["rs"] == "slow_call_rate"


# ------------------------------------------------------------------ HALF_OPEN across the fleet


ONE_PROBE = {"failure_threshold": 1, "reset_timeout": 0.0, "half_open_max_calls": 1, "success_threshold": 1}


def open_fleet(fleet: Fleet, members: list[Any]) -> None:
    """Trip the first member and let everyone hear of it (reset_timeout=0: a probe may start at once)."""
    fleet.sync()
    while members[0].state is not OPEN:
        call(members[0], boom)
    fleet.sync()
    assert {b.state for b in members} == {OPEN}


def test_exactly_half_open_max_calls_probes_across_the_fleet(fleet: Fleet) -> None:
    members = [fleet.breaker(failure_threshold=1, reset_timeout=0.0, half_open_max_calls=3) for _ in range(4)]
    open_fleet(fleet, members)
    probes = 0
    release = threading.Event()

    def hanging_probe() -> str:
        nonlocal probes
        probes += 1
        release.wait()
        return "ok"

    # Every member keeps asking; each sync hands out permits; a probe hangs (holds its permit).
    threads: list[threading.Thread] = []
    for _ in range(10):
        for breaker in members:
            for _ in range(5):
                try:
                    permit = breaker.acquire()
                except sw.CircuitOpenError:
                    continue
                thread = threading.Thread(target=lambda b=breaker, p=permit: (hanging_probe(), b.record_success(p)))
                threads.append(thread)
                thread.start()
        fleet.sync()
    assert len(threads) == 3
    assert fleet.state()["pr"] == "3"
    release.set()
    for thread in threads:
        thread.join()
    fleet.sync()
    assert fleet.state()["st"] == "closed"  # 3 successful probes (success_threshold 3)
    fleet.sync()
    assert {b.state for b in members} == {CLOSED}


def test_a_failed_probe_reopens_the_fleet(fleet: Fleet) -> None:
    members = [fleet.breaker(failure_threshold=1, reset_timeout=0.0) for _ in range(2)]
    open_fleet(fleet, members)
    assert call(members[1], ok) == "rejected"  # asks for a permit
    fleet.sync()
    assert members[1].state is HALF_OPEN
    assert call(members[1], boom) == "failed"
    fleet.sync()
    state = fleet.state()
    assert (state["st"], state["rs"], state["on"]) == ("open", "probes_failed", "2")


def test_rate_models_judge_the_fleets_probes_together(fleet: Fleet) -> None:
    config = {"window": sw.CountWindow(4), "half_open_max_calls": 2, "success_threshold": 1}
    members = [fleet.breaker(reset_timeout=0.0, failure_rate_threshold=50.0, **config) for _ in range(2)]
    fleet.sync()
    for _ in range(4):
        call(members[0], boom)
    fleet.sync()
    assert {b.state for b in members} == {OPEN}
    for breaker in members:
        call(breaker, ok)  # both ask
    fleet.sync()
    assert call(members[0], ok) == "ok"  # one probe each
    assert call(members[1], ok) == "ok"
    fleet.sync()
    fleet.sync()
    assert {b.state for b in members} == {CLOSED}
    assert fleet.state()["rs"] == "probes_succeeded"


def test_a_released_probe_gives_its_permit_to_the_fleet(fleet: Fleet) -> None:
    members = [fleet.breaker(**ONE_PROBE) for _ in range(2)]
    open_fleet(fleet, members)
    call(members[0], ok)
    fleet.sync()
    permit = members[0].acquire()
    assert fleet.state()["pr"] == "1"
    assert call(members[1], ok) == "rejected"
    members[0].release(permit)  # cancelled: no outcome
    fleet.sync()
    assert fleet.state()["pr"] == "1"  # given back, and granted to the process that asked
    assert call(members[1], ok) == "ok"


def test_an_unused_permit_goes_back_after_a_sync_interval(fleet: Fleet) -> None:
    members = [fleet.breaker(**ONE_PROBE) for _ in range(2)]
    open_fleet(fleet, members)
    call(members[0], ok)  # asks, then never calls again
    fleet.sync()
    assert fleet.state()["pr"] == "1"
    fleet.sync()
    fleet.sync()
    assert fleet.state()["pr"] == "0"
    call(members[1], ok)
    fleet.sync()
    assert call(members[1], ok) == "ok"


def test_a_lost_probe_cannot_hold_the_fleet_in_half_open(fleet: Fleet) -> None:
    """A process that dies holding a permit: once all permits are out, the lease ends the period (0 ms here)."""
    store = fleet.store(probe_lease=1e-4)
    dying = fleet.breaker(store=store, **ONE_PROBE)
    other = fleet.breaker(store=fleet.store(), **ONE_PROBE)
    open_fleet(fleet, [dying, other])
    call(dying, ok)
    store.sync()
    dying.acquire()  # ... and the process dies: the permit is never returned
    store.sync()
    state = fleet.state()
    assert (state["st"], state["rs"]) == ("open", "max_half_open_wait")


# ------------------------------------------------------------------ manual control and configuration


def test_manual_transitions_apply_to_the_fleet(fleet: Fleet) -> None:
    a, b = fleet.breaker(), fleet.breaker()
    fleet.sync()
    a.force_open()
    fleet.sync()
    assert b.state is sw.CircuitState.FORCED_OPEN
    with pytest.raises(sw.CircuitOpenError) as caught:
        b.call(ok)
    assert caught.value.retry_after is None
    b.transition_to("metrics_only")
    fleet.settle()
    assert a.state is sw.CircuitState.METRICS_ONLY
    a.reset()
    fleet.sync()
    assert b.state is CLOSED


def test_a_fleet_transition_is_logged_and_emitted_in_every_process(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = fleet.breaker(failure_threshold=1, reset_timeout=1e6), fleet.breaker(failure_threshold=1)
    events: list[sw.CircuitStateChanged] = []

    def hook(event: object) -> None:
        if isinstance(event, sw.CircuitStateChanged):
            events.append(event)

    fleet.sync()
    sw.add_hook(hook)
    try:
        with caplog.at_level(logging.INFO, logger="stalwart"):
            call(a, boom)
            fleet.sync()
    finally:
        sw.remove_hook(hook)
    assert [(e.from_state, e.to_state, e.reason) for e in events] == [("closed", "open", "consecutive_failures")] * 2
    assert sum("closed -> open" in r.getMessage() for r in caplog.records) == 2
    assert b.state is OPEN


def test_differently_configured_processes_are_warned_once(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    fleet.breaker(failure_threshold=5)
    other = fleet.store()
    fleet.breaker(failure_threshold=7, store=other)
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        fleet.sync()
        fleet.sync()
    assert sum("configured differently" in r.getMessage() for r in caplog.records) == 1


def test_registry_breakers_take_a_store(fleet: Fleet) -> None:
    registry = sw.Registry()
    store = fleet.store()
    breaker = registry.breaker("search", store=store, critical=True)
    assert registry.breaker("search", store=store) is breaker
    breaker.force_open()
    store.sync()
    assert registry.critical_open()
    assert fleet.state("search")["st"] == "forced_open"


# ------------------------------------------------------------------ the background thread, lifecycle, validation


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition that a background thread will make true (no timing is asserted; 30 s is a hang)."""
    limit = time.monotonic() + 30.0
    while not condition():
        assert time.monotonic() < limit, "the background sync never happened"
        time.sleep(0.005)


def test_the_background_thread_syncs_and_close_stops_it(fleet: Fleet) -> None:
    a = fleet.breaker(failure_threshold=1, reset_timeout=1e6, store=fleet.store(flush_interval=3600.0))
    b = fleet.breaker(failure_threshold=1, reset_timeout=1e6, store=fleet.store(flush_interval=3600.0))
    wait_until(lambda: fleet.stores[0].connected and fleet.stores[1].connected)  # the first sync, at attach
    call(a, boom)  # a trip wakes a's thread at once
    wait_until(lambda: fleet.state().get("st") == "open")
    assert b.state is CLOSED  # b has not heard yet: its next sync is an hour away
    fleet.stores[1].close()
    assert b.state is OPEN  # close() syncs one last time
    thread = fleet.stores[1]._thread
    assert thread is not None
    assert not thread.running
    assert not fleet.stores[1].connected
    b.reset()  # now a local breaker: nothing reaches the fleet
    call(b, boom)
    assert b.state is OPEN
    assert fleet.state()["rs"] == "consecutive_failures"
    fleet.stores[1].close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        sw.CircuitBreaker("late", store=fleet.stores[1])


def test_from_url_owns_its_client(redis_url: str, unique_prefix: str, client: redis.Redis) -> None:
    with RedisCircuitStore.from_url(redis_url, prefix=unique_prefix, flush_interval=None) as store:
        breaker = sw.CircuitBreaker("owned", store=store)
        assert store.sync()
        breaker.call(ok)
        assert "RedisCircuitStore" in repr(store)
    assert client.hget(store.keys("owned")[0], "pc") == b"1"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"prefix": "a{b"}, ValueError, "prefix"),
        ({"prefix": ""}, ValueError, "prefix"),
        ({"flush_interval": 0}, ValueError, "flush_interval"),
        ({"flush_size": 0}, ValueError, "flush_size"),
        ({"probe_lease": 0}, ValueError, "probe_lease"),
        ({"ttl": -1}, ValueError, "ttl"),
    ],
)
def test_invalid_configuration_names_the_parameter(
    client: redis.Redis, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RedisCircuitStore(client, **kwargs)


def test_names_with_braces_and_non_stores_are_refused(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="name"):
        sw.CircuitBreaker("a{b}", store=fleet.store())
    with pytest.raises(TypeError, match="CircuitStore"):
        sw.CircuitBreaker("x", store=object())
    with pytest.raises(TypeError, match="synchronous"):
        RedisCircuitStore(redis.asyncio.Redis())  # type: ignore[arg-type]
