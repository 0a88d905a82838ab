"""Differential state machine: random transitions on a durable store and on ``MemoryStore``, answers compared.

``MemoryStore`` applies the pure transitions of ``_record.py``; the Redis Lua scripts re-implement them and the
PostgreSQL store splits them across SQL statements, so any divergence in a claim's decision, a compare-and-set or a
stored field shows up as a disagreement. Time never passes (leases and retention of an hour): expiry paths are
covered by the contract suite. Fences differ between stores, so they are compared through the order of grants:
every claim or reclaim must yield a fence above all earlier ones in both stores, and a CAS names the same grant in
both.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from idem_harness import ManualClock

from stalwart.idempotency import FP_VERSION, IdempotencyStore, Outcome, Record, StoredResponse
from stalwart.idempotency.stores import MemoryStore

OWNERS = ["o1", "o2", "o3"]
FPS = [b"\x01" * 32, b"\x02" * 32]
HOUR = 3600.0
UNKNOWN_FENCE = 10**12  # a fence no store has granted


class DifferentialMachine(RuleBasedStateMachine):
    """Subclasses provide :meth:`make_store` and :meth:`cleanup`."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.ref = MemoryStore(clock=ManualClock())
        self.store = self.make_store()
        ns = secrets.token_hex(6)
        self.rids = [f"{ns}{i}" for i in range(3)]
        self.grants: list[tuple[str, str, int]] = []  # (record_id, owner, reference fence)
        self.fences: dict[int, int] = {}  # reference fence -> store fence

    def make_store(self) -> IdempotencyStore:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove what the store wrote (runs after the store is closed)."""

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.store.aclose())
            self.loop.close()
        finally:
            self.cleanup()

    def same(self, ref: Record | None, got: Record | None) -> None:
        if ref is None or got is None:
            assert ref is got is None, (ref, got)
            return
        fields = ("record_id", "state", "fingerprint", "fp_version", "owner_token", "attempt", "outcome", "status")
        assert [getattr(got, f) for f in fields] == [getattr(ref, f) for f in fields]
        assert (got.headers, got.body, got.body_omitted) == (ref.headers, ref.body, ref.body_omitted)
        assert self.fences[ref.fence] == got.fence

    def target(self, data: st.DataObject) -> tuple[str, str, int, int]:
        """A CAS target as (record_id, owner, reference fence, store fence): a past grant or a random guess."""
        if self.grants and data.draw(st.booleans()):
            rid, owner, fence = data.draw(st.sampled_from(self.grants))
            return rid, owner, fence, self.fences[fence]
        rid, owner = data.draw(st.sampled_from(self.rids)), data.draw(st.sampled_from(OWNERS))
        return rid, owner, UNKNOWN_FENCE, UNKNOWN_FENCE

    @rule(data=st.data(), owner=st.sampled_from(OWNERS), fp=st.sampled_from(FPS), reclaim=st.booleans())
    def claim(self, data: st.DataObject, owner: str, fp: bytes, reclaim: bool) -> None:
        rid = data.draw(st.sampled_from(self.rids))
        kw: dict[str, Any] = {
            "fingerprint": fp,
            "fp_version": FP_VERSION,
            "owner_token": owner,
            "lease_ttl": HOUR,
            "retention": HOUR,
            "reclaim": reclaim,
        }
        ref = self.run(self.ref.claim(rid, **kw))
        got = self.run(self.store.claim(rid, **kw))
        assert got.claimed == ref.claimed
        if ref.record.fence not in self.fences:  # a new grant: above every earlier fence in both stores
            assert ref.claimed
            assert got.record.fence > max(self.fences.values(), default=0)
            self.fences[ref.record.fence] = got.record.fence
            self.grants.append((rid, owner, ref.record.fence))
        self.same(ref.record, got.record)

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        rid, owner, ref_fence, fence = self.target(data)
        ref = self.run(self.ref.heartbeat(rid, owner_token=owner, fence=ref_fence, lease_ttl=HOUR, retention=HOUR))
        assert (
            self.run(self.store.heartbeat(rid, owner_token=owner, fence=fence, lease_ttl=HOUR, retention=HOUR)) is ref
        )

    @rule(
        data=st.data(),
        status=st.sampled_from([200, 201, 404, 500]),
        body=st.binary(max_size=16),
        headers=st.lists(st.tuples(st.binary(min_size=1, max_size=4), st.binary(max_size=4)), max_size=3),
        omitted=st.booleans(),
    )
    def complete(
        self, data: st.DataObject, status: int, body: bytes, headers: list[tuple[bytes, bytes]], omitted: bool
    ) -> None:
        rid, owner, ref_fence, fence = self.target(data)
        response = StoredResponse(Outcome.RESPONSE, status, tuple(headers), body, omitted)
        ref = self.run(self.ref.complete(rid, owner_token=owner, fence=ref_fence, response=response, retention=HOUR))
        assert (
            self.run(self.store.complete(rid, owner_token=owner, fence=fence, response=response, retention=HOUR)) is ref
        )

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        rid, owner, ref_fence, fence = self.target(data)
        ref = self.run(self.ref.release(rid, owner_token=owner, fence=ref_fence))
        assert self.run(self.store.release(rid, owner_token=owner, fence=fence)) is ref

    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        rid, owner, ref_fence, fence = self.target(data)
        ref = self.run(self.ref.abandon(rid, owner_token=owner, fence=ref_fence))
        assert self.run(self.store.abandon(rid, owner_token=owner, fence=fence)) is ref

    @invariant()
    def records_agree(self) -> None:
        for rid in self.rids:
            self.same(self.run(self.ref.get(rid)), self.run(self.store.get(rid)))
        ref_abandoned = [r.record_id for r in self.run(self.ref.list_abandoned())]
        got_abandoned = [r.record_id for r in self.run(self.store.list_abandoned())]
        assert sorted(got_abandoned) == sorted(ref_abandoned)
