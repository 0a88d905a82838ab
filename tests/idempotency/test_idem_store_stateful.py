"""Hypothesis stateful test: random interleavings of store transitions against a reference model (spec §2.7).

The model is written independently of ``_record.py``. Invariants checked after every step: the store's record
equals the model's (so at most one owner's CAS can succeed per record), completed results are never overwritten,
and fences strictly increase with every claim or reclaim, across releases, expiries and purges.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from idem_harness import ManualClock

from stalwart.idempotency import FP_VERSION, IdempotencyStore, Outcome, State, StoredResponse
from stalwart.idempotency.stores import MemoryStore, SQLiteStore

RIDS = ["a" * 64, "b" * 64, "c" * 64]
OWNERS = ["o1", "o2", "o3", "o4"]
FPS = [b"\x01" * 32, b"\x02" * 32]
LEASE = 10.0
RETENTION = 100.0


@dataclass
class ModelRecord:
    state: str
    fingerprint: bytes
    owner: str
    fence: int
    attempt: int
    lease_until: float
    expires_at: float
    body: bytes | None = None


class StoreMachine(RuleBasedStateMachine):
    """Drives one store; subclasses choose which."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.tmp = tempfile.TemporaryDirectory()
        self.store: IdempotencyStore = self.make_store()
        self.model: dict[str, ModelRecord] = {}
        self.fences: list[int] = []
        self.granted: list[tuple[str, str, int]] = []  # (record_id, owner, fence) ever claimed
        self.completed_bodies: dict[tuple[str, int], bytes] = {}

    def make_store(self) -> IdempotencyStore:
        if self.kind == "sqlite":
            return SQLiteStore(Path(self.tmp.name) / "s.sqlite3", clock=self.clock)
        return MemoryStore(clock=self.clock)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.aclose())
        self.loop.close()
        self.tmp.cleanup()

    @initialize()
    def start(self) -> None:
        pass

    # -- model helpers --------------------------------------------------------------------------------------------

    def live(self, rid: str) -> ModelRecord | None:
        rec = self.model.get(rid)
        if rec is not None and rec.expires_at <= self.clock.now:
            del self.model[rid]
            return None
        return rec

    def owns(self, rid: str, owner: str, fence: int) -> ModelRecord | None:
        rec = self.live(rid)
        if rec is not None and rec.owner == owner and rec.fence == fence:
            return rec
        return None

    # -- rules ----------------------------------------------------------------------------------------------------

    @rule(rid=st.sampled_from(RIDS), owner=st.sampled_from(OWNERS), fp=st.sampled_from(FPS), reclaim=st.booleans())
    def claim(self, rid: str, owner: str, fp: bytes, reclaim: bool) -> None:
        now = self.clock.now
        rec = self.live(rid)
        result = self.run(
            self.store.claim(
                rid,
                fingerprint=fp,
                fp_version=FP_VERSION,
                owner_token=owner,
                lease_ttl=LEASE,
                retention=RETENTION,
                reclaim=reclaim,
            )
        )
        got = result.record
        if rec is None:
            assert result.claimed
            assert got.fence > max(self.fences, default=0)
            self.fences.append(got.fence)
            self.model[rid] = ModelRecord("in_progress", fp, owner, got.fence, 1, now + LEASE, now + LEASE + RETENTION)
            self.granted.append((rid, owner, got.fence))
        elif rec.fingerprint != fp:
            assert not result.claimed
        elif rec.state == "in_progress" and rec.owner == owner:
            assert result.claimed
            assert got.fence == rec.fence
        elif (rec.state == "in_progress" and rec.lease_until < now and reclaim) or (
            rec.state == "abandoned" and reclaim
        ):
            assert result.claimed
            assert got.fence > max(self.fences, default=0)
            self.fences.append(got.fence)
            rec.owner, rec.fence, rec.attempt, rec.state = owner, got.fence, rec.attempt + 1, "in_progress"
            rec.lease_until, rec.expires_at = now + LEASE, now + LEASE + RETENTION
            self.granted.append((rid, owner, got.fence))
        elif rec.state == "in_progress" and rec.lease_until < now:
            assert not result.claimed
            rec.state = "abandoned"
        else:
            assert not result.claimed

    @rule(data=st.data(), owner=st.sampled_from(OWNERS), reclaim=st.booleans())
    def claim_existing(self, data: st.DataObject, owner: str, reclaim: bool) -> None:
        """A retry of a known request (same record and fingerprint): the interesting transitions."""
        if not self.model:
            return
        rid = data.draw(st.sampled_from(sorted(self.model)))
        self.claim(rid, owner, self.model[rid].fingerprint, reclaim)

    def cas_target(self, data: st.DataObject) -> tuple[str, str, int]:
        if self.granted and data.draw(st.booleans()):
            return data.draw(st.sampled_from(self.granted))
        return (data.draw(st.sampled_from(RIDS)), data.draw(st.sampled_from(OWNERS)), data.draw(st.integers(0, 50)))

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        rid, owner, fence = self.cas_target(data)
        rec = self.owns(rid, owner, fence)
        expected = rec is not None and rec.state == "in_progress"
        got = self.run(self.store.heartbeat(rid, owner_token=owner, fence=fence, lease_ttl=LEASE, retention=RETENTION))
        assert got == expected
        if rec is not None and expected:
            rec.lease_until = self.clock.now + LEASE
            rec.expires_at = max(rec.expires_at, rec.lease_until + RETENTION)

    @rule(data=st.data(), body=st.binary(max_size=8))
    def complete(self, data: st.DataObject, body: bytes) -> None:
        rid, owner, fence = self.cas_target(data)
        rec = self.owns(rid, owner, fence)
        expected = rec is not None and rec.state != "completed"
        response = StoredResponse(Outcome.RESPONSE, 200, (), body)
        got = self.run(self.store.complete(rid, owner_token=owner, fence=fence, response=response, retention=RETENTION))
        assert got == expected
        if rec is not None and expected:
            rec.state, rec.body, rec.expires_at = "completed", body, self.clock.now + RETENTION
            self.completed_bodies[(rid, rec.fence)] = body

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        rid, owner, fence = self.cas_target(data)
        rec = self.owns(rid, owner, fence)
        expected = rec is not None and rec.state != "completed"
        assert self.run(self.store.release(rid, owner_token=owner, fence=fence)) == expected
        if expected:
            del self.model[rid]

    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        rid, owner, fence = self.cas_target(data)
        rec = self.owns(rid, owner, fence)
        expected = rec is not None and rec.state == "in_progress"
        assert self.run(self.store.abandon(rid, owner_token=owner, fence=fence)) == expected
        if rec is not None and expected:
            rec.state = "abandoned"

    @rule(seconds=st.sampled_from([0.5, 5.0, 9.5, 10.0, 11.0, 60.0, 100.0, 150.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def purge(self) -> None:
        now = self.clock.now
        expired = sum(1 for r in self.model.values() if r.expires_at <= now)
        assert self.run(self.store.purge()) >= expired  # may also remove records already gone from the model
        for rid in [k for k, r in self.model.items() if r.expires_at <= now]:
            del self.model[rid]

    # -- invariants -----------------------------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        for rid in RIDS:
            rec = self.live(rid)
            got = self.run(self.store.get(rid))
            if rec is None:
                assert got is None
                continue
            assert got is not None
            assert (got.state.value, got.owner_token, got.fence, got.attempt, got.fingerprint) == (
                rec.state,
                rec.owner,
                rec.fence,
                rec.attempt,
                rec.fingerprint,
            )
            assert got.lease_expires_at == pytest.approx(rec.lease_until)
            assert got.expires_at == pytest.approx(rec.expires_at)
            if rec.state == "completed":
                assert got.state is State.COMPLETED
                assert got.body == rec.body == self.completed_bodies[(rid, rec.fence)]

    @invariant()
    def fences_strictly_increase(self) -> None:
        assert self.fences == sorted(set(self.fences))


class MemoryMachine(StoreMachine):
    kind = "memory"


class SQLiteMachine(StoreMachine):
    kind = "sqlite"


_settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

TestMemoryStoreStateful = _settings(MemoryMachine).TestCase
TestSQLiteStoreStateful = settings(_settings, max_examples=40)(SQLiteMachine).TestCase
