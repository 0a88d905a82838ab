"""Regression: a shared breaker whose state Redis lost closed in every process of the fleet at once.

What was wrong: when a breaker's keys were gone from Redis (a restart without persistence, a failover to a replica
that missed the latest writes, eviction, a ``DEL``), the sync script created a new CLOSED state and every process
adopted it, although each one held the breaker OPEN: the whole fleet called the failing dependency again at once,
the thundering herd the breaker exists to prevent. The same when Redis came back empty after an outage during which
the processes ran on their local OPEN, and when a replica answered with an older state (an older epoch).

Now every sync of a process whose breaker is OPEN, HALF_OPEN or FORCED_OPEN carries a *claim* (its state, the rest
of its open period on its own clock: 0 from HALF_OPEN); the script restores the claim when the fleet's state was
rebuilt from nothing (no keys; a CLOSED state created by a process that had nothing to claim) or is older than the
epoch the process knew. Several claims meet deterministically, whatever their order: FORCED_OPEN over OPEN over
anything else, and among OPEN the latest end of the open period. A process with nothing to claim (CLOSED) keeps
CLOSED on a lost state, as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import stalwart as sw
from stalwart.redis import RedisCircuitStore
from stalwart.testing import FakeClock

pytestmark = pytest.mark.integration

CLOSED = sw.CircuitState.CLOSED
OPEN = sw.CircuitState.OPEN
HALF_OPEN = sw.CircuitState.HALF_OPEN
FORCED_OPEN = sw.CircuitState.FORCED_OPEN
LONG = 1e6  # an open period that never ends during a test


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
    keys = list(connection.scan_iter(match=f"{{{unique_prefix}*"))
    if keys:
        connection.delete(*keys)
    connection.close()


class Process:
    """One process of the fleet: its own store (synced by the test), breaker and fake clock."""

    def __init__(self, client: redis.Redis, prefix: str, **config: Any) -> None:
        self.store = RedisCircuitStore(client, prefix=prefix, flush_interval=None)
        self.clock = FakeClock()
        config.setdefault("failure_threshold", 1)
        config.setdefault("reset_timeout", LONG)
        self.breaker = sw.CircuitBreaker("payments", store=self.store, clock=self.clock, **config)

    def sync(self) -> None:
        assert self.store.sync()

    def calls(self) -> str:
        try:
            return str(self.breaker.call(ok))
        except sw.CircuitOpenError:
            return "rejected"

    def retry_after(self) -> float | None:
        return self.breaker.statistics().retry_after


class Fleet:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.processes: list[Process] = []

    def process(self, **config: Any) -> Process:
        process = Process(self.client, self.prefix, **config)
        self.processes.append(process)
        return process

    def keys(self) -> tuple[str, str]:
        return self.processes[0].store.keys("payments")

    def state(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.keys()[0]).items()}

    def lose_state(self) -> None:
        """What a restart without persistence, an eviction or a ``DEL`` leaves: no keys."""
        assert self.client.delete(*self.keys()) >= 1

    def open_all(self, opener: Process | None = None) -> None:
        """``opener`` (the first process) trips; every process hears of it and is OPEN."""
        for process in self.processes:
            process.sync()
        opener = opener or self.processes[0]
        with pytest.raises(Boom):
            opener.breaker.call(boom)
        for _ in range(2):
            for process in self.processes:
                process.sync()
        assert [p.breaker.state for p in self.processes] == [OPEN] * len(self.processes)

    def close(self) -> None:
        for process in self.processes:
            process.store.close()


@pytest.fixture
def fleet(client: redis.Redis, unique_prefix: str) -> Iterator[Fleet]:
    members = Fleet(client, unique_prefix)
    yield members
    members.close()


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_open_breakers_stay_open_when_redis_loses_the_state(fleet: Fleet, order: tuple[int, int]) -> None:
    """The reviewer's probe: two processes OPEN (reset_timeout=1e6), the keys deleted, both sync."""
    processes = [fleet.process(), fleet.process()]
    fleet.open_all()
    fleet.lose_state()
    for index in order:
        processes[index].sync()
    for index in order:
        processes[index].sync()
    assert [p.breaker.state for p in processes] == [OPEN, OPEN]
    assert [p.calls() for p in processes] == ["rejected", "rejected"]
    assert fleet.state()["st"] == "open"
    for process in processes:
        retry_after = process.retry_after()
        assert retry_after is not None
        assert retry_after > LONG - 60.0


def test_the_latest_open_period_wins_whatever_order_the_processes_sync_in(client: redis.Redis) -> None:
    """Three processes with different ends of their open period (their clocks moved on): the latest end wins."""
    for order in itertools.permutations(range(3)):
        prefix = f"stalwart-test-lost-{''.join(map(str, order))}-{id(order)}"
        fleet = Fleet(client, prefix)
        try:
            processes = [fleet.process(), fleet.process(), fleet.process()]
            fleet.open_all()
            processes[0].clock.advance(300.0)  # its open period ends 300 s earlier than the others'...
            processes[2].clock.advance(100.0)
            processes[1].clock.advance(0.0)  # ... and process 1's is the latest
            fleet.lose_state()
            for _ in range(2):
                for index in order:
                    processes[index].sync()
            assert [p.breaker.state for p in processes] == [OPEN, OPEN, OPEN], order
            # Process 1's end (LONG from now on its clock) is everyone's: the others' retry_after grew by the time
            # their own clocks had moved on.
            remaining = [p.retry_after() for p in processes]
            assert all(r is not None and abs(r - LONG) < 60.0 for r in remaining), (order, remaining)
        finally:
            fleet.close()
            keys = list(client.scan_iter(match=f"{{{prefix}*"))
            if keys:
                client.delete(*keys)


def test_a_closed_process_finding_no_state_stays_closed(fleet: Fleet) -> None:
    process = fleet.process()
    process.sync()
    assert process.calls() == "ok"
    process.sync()
    fleet.lose_state()
    process.sync()
    assert process.breaker.state is CLOSED
    assert process.calls() == "ok"
    assert fleet.state()["st"] == "closed"


def test_a_closed_state_rebuilt_first_gives_way_to_an_open_claim(fleet: Fleet) -> None:
    """A process with nothing to claim (here: one started after the loss) syncs first and creates a CLOSED state;
    the OPEN processes of the old state still reopen it, and the newcomer follows."""
    veteran = fleet.process()
    fleet.open_all()
    fleet.lose_state()
    newcomer = fleet.process()
    newcomer.sync()
    assert fleet.state()["st"] == "closed"
    veteran.sync()
    newcomer.sync()
    assert veteran.breaker.state is OPEN
    assert newcomer.breaker.state is OPEN
    assert newcomer.calls() == "rejected"
    retry_after = newcomer.retry_after()
    assert retry_after is not None
    assert retry_after > LONG - 60.0


def test_half_open_comes_back_open_with_its_open_period_over(fleet: Fleet) -> None:
    """HALF_OPEN is claimed as OPEN with nothing left of its open period: a new HALF_OPEN period follows at the next
    demand, with the fleet's permit limit (never CLOSED, never unbounded probes)."""
    config = {"reset_timeout": 0.0, "half_open_max_calls": 1, "success_threshold": 1}
    processes = [fleet.process(**config), fleet.process(**config)]
    fleet.open_all()
    first = processes[0]
    assert first.calls() == "rejected"  # asks the fleet for a probe permit
    first.sync()
    assert first.breaker.state is HALF_OPEN
    processes[1].sync()
    assert processes[1].breaker.state is HALF_OPEN
    fleet.lose_state()
    for process in processes:
        process.sync()
    assert fleet.state()["st"] == "open"
    assert [p.breaker.state for p in processes] == [OPEN, OPEN]
    # Probing resumes across the fleet: one permit in all.
    assert [p.calls() for p in processes] == ["rejected", "rejected"]  # both ask the fleet for a permit
    for process in processes:
        process.sync()
    assert fleet.state()["st"] == "half_open"
    assert [p.calls() for p in processes].count("ok") == 1
    for process in processes:
        process.sync()
    assert [p.breaker.state for p in processes] == [CLOSED, CLOSED]


def test_forced_open_survives_a_lost_state(fleet: Fleet) -> None:
    operator, other = fleet.process(), fleet.process()
    operator.sync()
    other.sync()
    operator.breaker.force_open()
    operator.sync()
    other.sync()
    assert other.breaker.state is FORCED_OPEN
    fleet.lose_state()
    other.sync()
    operator.sync()
    assert fleet.state()["st"] == "forced_open"
    assert [operator.breaker.state, other.breaker.state] == [FORCED_OPEN, FORCED_OPEN]


def test_an_older_state_from_a_replica_does_not_close_the_fleet(fleet: Fleet, client: redis.Redis) -> None:
    """A failover to a replica that missed the latest write: Redis answers with the state of an earlier epoch."""
    processes = [fleet.process(), fleet.process()]
    fleet.open_all()
    processes[1].breaker.reset()  # the fleet closes again (manual): a state with a history, not a rebuilt one
    for process in processes + processes:
        process.sync()
    assert [p.breaker.state for p in processes] == [CLOSED, CLOSED]
    state_key = fleet.keys()[0]
    before = client.hgetall(state_key)  # CLOSED, epoch E
    assert before[b"rb"] == b"0"
    fleet.open_all()  # epoch E + 1, OPEN
    client.delete(*fleet.keys())
    client.hset(state_key, mapping=before)  # the replica's copy
    for process in reversed(processes):
        process.sync()
    for process in processes:
        process.sync()
    assert [p.breaker.state for p in processes] == [OPEN, OPEN]
    assert fleet.state()["st"] == "open"
    assert int(fleet.state()["ep"]) > int(before[b"ep"]) + 1  # never an epoch the processes knew another state by


class Unreachable:
    """Make a store's syncs fail as if Redis did not answer (the script raises ``ConnectionError``)."""

    def __init__(self, store: RedisCircuitStore) -> None:
        self.store = store
        self.script: Callable[..., Any] = store._script

    def __enter__(self) -> None:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise redis.ConnectionError("connection refused")

        self.store._script = refused  # type: ignore[assignment]

    def __exit__(self, *exc_info: object) -> None:
        self.store._script = self.script  # type: ignore[assignment]


@pytest.mark.parametrize("lost", [True, False], ids=["comes-back-empty", "comes-back-with-the-state"])
def test_local_open_survives_the_reconnect(fleet: Fleet, lost: bool) -> None:
    """Redis unreachable for a while (the processes decide locally), then back: empty (a restart) or as it was."""
    processes = [fleet.process(), fleet.process()]
    fleet.open_all()
    outages = [Unreachable(p.store) for p in processes]
    for outage in outages:
        outage.__enter__()
    try:
        for process in processes:
            assert not process.store.sync()
            process.clock.advance(10.0)
            assert process.calls() == "rejected"  # the local OPEN rules
    finally:
        for outage in outages:
            outage.__exit__()
    if lost:
        fleet.lose_state()
    for _ in range(2):
        for process in processes:
            process.sync()
    assert [p.breaker.state for p in processes] == [OPEN, OPEN]
    assert [p.calls() for p in processes] == ["rejected", "rejected"]
    assert fleet.state()["st"] == "open"
    for process in processes:
        retry_after = process.retry_after()
        assert retry_after is not None
        assert retry_after > LONG - 60.0


def test_a_manual_transition_after_the_loss_is_not_undone_by_claims(fleet: Fleet) -> None:
    """An operator's ``reset()`` reaching the empty store first is a decision, not a rebuilt state: claims of the
    lost OPEN do not override it (manual transitions apply as they are, as always)."""
    processes = [fleet.process(), fleet.process()]
    fleet.open_all()
    fleet.lose_state()
    processes[1].breaker.reset()
    processes[1].sync()
    processes[0].sync()
    assert [p.breaker.state for p in processes] == [CLOSED, CLOSED]
    assert fleet.state()["st"] == "closed"
