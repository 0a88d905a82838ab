"""Hypothesis stateful test of breakers shared through a real Redis: three "processes" (a store and a breaker each,
synced by the test) under random interleavings of calls, outcomes, cancellations and syncs.

Properties, whatever the interleaving:

* safety: no HALF_OPEN period of the fleet admits more than ``half_open_max_calls`` probes across processes, not
  counting probes that ended without an outcome (they give their permit back, as in a local breaker);
* the fleet's count of permits out never exceeds ``half_open_max_calls``;
* a process only ever mirrors a state the fleet has been in (it never invents HALF_OPEN or CLOSED on its own while
  connected);
* liveness: once every call in progress has ended, a few rounds of callers and syncs bring the fleet out of
  HALF_OPEN (nothing is stuck: permits are returned or used, and successful probes close the breaker).
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import stalwart as sw
from stalwart.redis import RedisCircuitStore
from stalwart.testing import FakeClock

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROCESSES = 3
MAX_PROBES = 2
CONFIG: dict[str, Any] = {
    "failure_threshold": 2,
    "success_threshold": 2,
    "half_open_max_calls": MAX_PROBES,
    "reset_timeout": 0.0,  # probes may start as soon as the fleet opens: no waiting in a test
}


def make_machine(client: redis.Redis) -> type[RuleBasedStateMachine]:
    class SharedBreakers(RuleBasedStateMachine):
        permits = Bundle("permits")

        @initialize()
        def start(self) -> None:
            self.prefix = f"stalwart-test-{uuid.uuid4().hex[:12]}"
            self.stores = [RedisCircuitStore(client, prefix=self.prefix, flush_interval=None) for _ in range(PROCESSES)]
            self.breakers = [
                sw.CircuitBreaker("dep", store=store, clock=FakeClock(), **CONFIG) for store in self.stores
            ]
            self.probes: Counter[int] = Counter()  # admitted probes per fleet HALF_OPEN epoch
            self.held: dict[int, tuple[int, int, int | None]] = {}  # token -> (process, permit, probe epoch)
            self.tokens = itertools.count()
            self.fleet_states: set[tuple[int, str]] = set()
            for store in self.stores:
                assert store.sync()
            self.record_fleet()

        def record_fleet(self) -> None:
            fields = client.hmget(self.stores[0].keys("dep")[0], "ep", "st")
            if fields[0] is not None:
                self.fleet_states.add((int(fields[0]), fields[1].decode()))

        @rule(target=permits, process=st.integers(0, PROCESSES - 1))
        def call_starts(self, process: int) -> Any:
            breaker = self.breakers[process]
            try:
                permit = breaker.acquire()
            except sw.CircuitOpenError:
                return multiple()
            core = breaker._core
            epoch = None
            if core.state is sw.CircuitState.HALF_OPEN:
                epoch = core.fleet_epoch
                self.probes[epoch] += 1
            token = next(self.tokens)
            self.held[token] = (process, permit, epoch)
            return token

        def _end(self, token: int) -> tuple[Any, int]:
            process, permit, _ = self.held[token]
            del self.held[token]
            return self.breakers[process], permit

        @rule(token=consumes(permits))
        def call_succeeds(self, token: int) -> None:
            breaker, permit = self._end(token)
            breaker.record_success(permit)

        @rule(token=consumes(permits))
        def call_fails(self, token: int) -> None:
            breaker, permit = self._end(token)
            breaker.record_failure(permit)

        @rule(token=consumes(permits))
        def call_is_cancelled(self, token: int) -> None:
            epoch = self.held[token][2]
            breaker, permit = self._end(token)
            breaker.release(permit)
            if epoch is not None:
                self.probes[epoch] -= 1  # its permit went back

        @rule(process=st.integers(0, PROCESSES - 1), fails=st.booleans())
        def quick_call(self, process: int, fails: bool) -> None:
            """A call that starts and ends at once."""
            breaker = self.breakers[process]
            try:
                permit = breaker.acquire()
            except sw.CircuitOpenError:
                return
            core = breaker._core
            if core.state is sw.CircuitState.HALF_OPEN:
                self.probes[core.fleet_epoch] += 1
            if fails:
                breaker.record_failure(permit)
            else:
                breaker.record_success(permit)

        @rule(process=st.integers(0, PROCESSES - 1))
        def sync(self, process: int) -> None:
            assert self.stores[process].sync()
            self.record_fleet()

        @rule()
        def sync_all(self) -> None:
            for store in self.stores:
                assert store.sync()
            self.record_fleet()

        @invariant()
        def no_period_admits_too_many_probes(self) -> None:
            if hasattr(self, "probes"):
                assert all(count <= MAX_PROBES for count in self.probes.values()), self.probes

        @invariant()
        def fleet_permits_within_bound(self) -> None:
            if hasattr(self, "stores"):
                out = client.hget(self.stores[0].keys("dep")[0], "pr")
                assert int(out or 0) <= MAX_PROBES

        @invariant()
        def processes_mirror_fleet_states(self) -> None:
            if not hasattr(self, "breakers"):
                return
            for breaker in self.breakers:
                core = breaker._core
                if core.connected and core.proposal is None and core.state is not sw.CircuitState.OPEN:
                    # OPEN may be a local trip not yet sent; any other state came from the fleet
                    assert (core.fleet_epoch, core.state.value) in self.fleet_states

        def teardown(self) -> None:
            if not hasattr(self, "stores"):
                return
            try:
                # Every call in progress ends, successfully; then a few rounds of callers and syncs must close the
                # fleet's breaker (an OPEN with a 0 s open period goes to HALF_OPEN on the next demand).
                for process, permit, _ in self.held.values():
                    self.breakers[process].record_success(permit)
                self.held.clear()
                for _ in range(8):
                    for process, breaker in enumerate(self.breakers):
                        try:
                            permit = breaker.acquire()
                        except sw.CircuitOpenError:
                            pass
                        else:
                            breaker.record_success(permit)
                        assert self.stores[process].sync()
                state = client.hget(self.stores[0].keys("dep")[0], "st")
                assert state == b"closed", state
            finally:
                for store in self.stores:
                    store.close()
                keys = list(client.scan_iter(match=f"{{{self.prefix}*"))
                if keys:
                    client.delete(*keys)

    return SharedBreakers


def test_shared_breakers_under_random_interleavings(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    try:
        machine = make_machine(client)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=100,
                stateful_step_count=60,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        client.close()
