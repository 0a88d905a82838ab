"""IdempotencyMiddleware: leases, heartbeats, strict vs reclaim, store outages, cancellation (spec §2.12 - §2.14)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from idem_apps import Probe, client, headers, make_app, wrap
from idem_harness import ManualClock, YieldingClock
from starlette.responses import PlainTextResponse

from stalwart import CircuitBreaker, StoreUnavailable
from stalwart.idempotency import IdempotencyConfig, MemoryStore, RecordDecodeError, State
from stalwart.testing import FakeClock

PAYLOAD = {"amount": 1}


class FlakyStore(MemoryStore):
    """A MemoryStore whose operations can be made to fail or hang, and which counts calls."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail: set[str] = set()
        self.hang: set[str] = set()
        self.calls: dict[str, int] = {}
        self.on_heartbeat: Any = None

    async def _gate(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.fail:
            raise StoreUnavailable(f"{name} failed")
        if name in self.hang:
            await asyncio.Event().wait()

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        await self._gate("claim")
        return await super().claim(*args, **kwargs)

    async def heartbeat(self, *args: Any, **kwargs: Any) -> bool:
        await self._gate("heartbeat")
        ok = await super().heartbeat(*args, **kwargs)
        if self.on_heartbeat is not None:
            self.on_heartbeat()
        return ok

    async def complete(self, *args: Any, **kwargs: Any) -> bool:
        await self._gate("complete")
        return await super().complete(*args, **kwargs)

    async def purge(self, *, limit: int = 1000) -> int:
        await self._gate("purge")
        return await super().purge(limit=limit)

    def only(self) -> Any:
        (record,) = self._records.values()
        return record


async def test_store_unavailable_at_claim_is_503_and_the_handler_never_runs() -> None:
    probe = Probe()
    store = FlakyStore()
    store.fail.add("claim")
    mw = wrap(make_app(probe), store)
    async with client(mw) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert r.status_code == 503
    assert r.headers["retry-after"] in {"1", "2"}
    assert r.json()["type"].endswith("/idempotency-store-unavailable")
    assert probe.calls == 0
    assert store.calls["claim"] == 2  # repeated once with the same owner token
    assert mw.statistics()["store_unavailable_503"] == 1


async def test_a_hanging_store_times_out_into_503() -> None:
    probe = Probe()
    store = FlakyStore()
    store.hang.add("claim")
    async with client(wrap(make_app(probe), store, config=IdempotencyConfig(store_timeout=0.02))) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert r.status_code == 503
    assert probe.calls == 0


async def test_an_ambiguous_claim_is_repeated_with_the_same_token() -> None:
    class LostAnswer(MemoryStore):
        attempts = 0

        async def claim(self, *args: Any, **kwargs: Any) -> Any:
            result = await super().claim(*args, **kwargs)
            LostAnswer.attempts += 1
            if LostAnswer.attempts == 1:
                await asyncio.Event().wait()  # applied, but the answer never arrives
            return result

    probe = Probe()
    async with client(wrap(make_app(probe), LostAnswer(), config=IdempotencyConfig(store_timeout=0.02))) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert r.status_code == 201
    assert probe.calls == 1


async def test_a_claim_applied_but_never_answered_is_given_back_after_the_503() -> None:
    class AppliedThenHangs(MemoryStore):
        async def claim(self, *args: Any, **kwargs: Any) -> Any:
            await super().claim(*args, **kwargs)
            await asyncio.Event().wait()

    store = AppliedThenHangs()
    mw = wrap(make_app(Probe()), store, config=IdempotencyConfig(store_timeout=0.02))
    async with client(mw) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert r.status_code == 503
    for _ in range(10):
        if not mw._background:
            break
        await asyncio.gather(*mw._background)
    assert len(store) == 0  # released, so the retry can execute


async def test_a_request_cancelled_during_its_claim_gives_the_claim_back() -> None:
    applied = asyncio.Event()

    class SlowAnswer(MemoryStore):
        async def claim(self, *args: Any, **kwargs: Any) -> Any:
            result = await super().claim(*args, **kwargs)
            applied.set()
            await asyncio.Event().wait()
            return result

    store = SlowAnswer()
    mw = wrap(make_app(Probe()), store)
    async with client(mw) as c:
        task = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await applied.wait()
        assert len(store) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(10):
        if not mw._background:
            break
        await asyncio.gather(*mw._background)
    assert len(store) == 0  # never executed, so the key must not lapse into "outcome unknown"


async def test_undecodable_records_are_503() -> None:
    class Broken(MemoryStore):
        async def claim(self, *args: Any, **kwargs: Any) -> Any:
            raise RecordDecodeError("schema 99")

    probe = Probe()
    async with client(wrap(make_app(probe), Broken())) as c:
        assert (await c.post("/payments", json=PAYLOAD, headers=headers())).status_code == 503
    assert probe.calls == 0


async def test_fail_open_runs_the_handler_without_idempotency() -> None:
    probe = Probe()
    store = FlakyStore()
    store.fail.add("claim")
    mw = wrap(make_app(probe), store, config=IdempotencyConfig(fail_open=True))
    async with client(mw) as c:
        first = await c.post("/payments", json=PAYLOAD, headers=headers())
        second = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert first.status_code == second.status_code == 201
    assert first.json()["echo"] == '{"amount":1}'  # the buffered body reached the handler
    assert probe.calls == 2
    assert mw.statistics()["fail_open_bypasses"] == 2


async def test_an_open_breaker_answers_503_without_asking_the_store() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("idempotency-store", failure_threshold=1, reset_timeout=30.0, clock=clock)
    store = FlakyStore()
    store.fail.add("claim")
    probe = Probe()
    async with client(wrap(make_app(probe), store, breaker=breaker)) as c:
        assert (await c.post("/payments", json=PAYLOAD, headers=headers())).status_code == 503
        assert store.calls["claim"] == 2
        assert (await c.post("/payments", json=PAYLOAD, headers=headers())).status_code == 503
        assert store.calls["claim"] == 2  # the open breaker refused before the store
        store.fail.clear()
        clock.advance(31)
        assert (await c.post("/payments", json=PAYLOAD, headers=headers())).status_code == 201
    assert probe.calls == 1


async def test_completion_failure_delivers_the_real_response_and_leaves_the_record_in_progress() -> None:
    store = FlakyStore()
    store.fail.add("complete")
    probe = Probe()
    clock = YieldingClock()
    mw = wrap(make_app(probe), store, clock=clock)
    async with client(mw) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert 0.05 in clock.sleeps  # backoff between completion attempts
    assert r.status_code == 201  # the truth, never converted into a 5xx
    assert store.calls["complete"] == 3
    assert store.only().state is State.IN_PROGRESS
    assert mw.statistics()["completion_write_failures"] == 1


async def test_completion_is_retried() -> None:
    class FailsOnce(FlakyStore):
        async def complete(self, *args: Any, **kwargs: Any) -> bool:
            if not self.calls.get("complete"):
                self.calls["complete"] = 1
                raise StoreUnavailable("blip")
            return await super().complete(*args, **kwargs)

    store = FailsOnce()
    async with client(wrap(make_app(Probe()), store, clock=YieldingClock())) as c:
        await c.post("/payments", json=PAYLOAD, headers=headers())
    assert store.only().state is State.COMPLETED


async def test_strict_lease_expiry_replays_outcome_unknown_then_the_late_result() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    probe = Probe()
    probe.hold()
    config = IdempotencyConfig(lease_ttl=10.0, heartbeat_every=9.0)
    mw = wrap(make_app(probe), store, config=config)
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        clock.advance(11)  # the lease lapses while the handler still runs (a GC pause, a partition)
        unknown = await c.post("/payments", json=PAYLOAD, headers=headers())
        again = await c.post("/payments", json=PAYLOAD, headers=headers())
        probe.release()
        first = await original
        replay = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert unknown.status_code == again.status_code == 500
    assert unknown.json()["type"].endswith("/idempotency-outcome-unknown")
    assert unknown.headers["idempotent-replayed"] == "true"
    assert first.status_code == 201
    assert replay.status_code == 201  # the late completion upgraded the record
    assert replay.content == first.content
    assert probe.calls == 1  # strict: exactly one execution
    assert mw.statistics()["abandoned"] == 2


async def test_after_the_retention_a_key_is_new_again() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    probe = Probe()
    mw = wrap(make_app(probe), store, config=IdempotencyConfig(retention=60.0))
    async with client(mw) as c:
        await c.post("/payments", json=PAYLOAD, headers=headers())
        clock.advance(59)
        assert (await c.post("/payments", json=PAYLOAD, headers=headers())).headers["idempotent-replayed"] == "true"
        clock.advance(2)
        again = await c.post("/payments", json={"other": "body"}, headers=headers())
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert probe.calls == 2


async def test_abandoned_status_is_configurable() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    probe = Probe()
    probe.hold()
    config = IdempotencyConfig(lease_ttl=10.0, heartbeat_every=9.0, abandoned_status=409)
    async with client(wrap(make_app(probe), store, config=config)) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        clock.advance(11)
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
        probe.release()
        await original
    assert r.status_code == 409
    assert r.json()["type"].endswith("/idempotency-outcome-unknown")


async def test_reclaim_mode_re_executes_and_fences_out_the_stale_owner() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    probe = Probe()
    probe.hold()
    config = IdempotencyConfig(lease_ttl=10.0, heartbeat_every=9.0, reclaim_on_lease_expiry=True)
    mw = wrap(make_app(probe), store, config=config)
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        clock.advance(11)
        gate, probe.gate = probe.gate, None  # the second execution does not wait
        second = await c.post("/payments", json=PAYLOAD, headers=headers())
        assert probe.calls == 2  # at-least-once, as documented for reclaim mode
        assert gate is not None
        gate.set()
        first = await original
        replay = await c.post("/payments", json=PAYLOAD, headers=headers())
    fences = [s.fence for s in probe.seen_states]
    assert fences[1] > fences[0]
    assert [s.attempt for s in probe.seen_states] == [1, 2]
    assert first.status_code == second.status_code == 201
    assert first.content != second.content
    assert replay.content == second.content  # the stale owner's completion was refused by the CAS
    assert mw.statistics()["lease_lost"] == 1


async def test_heartbeats_keep_a_long_handler_from_being_abandoned() -> None:
    clock = ManualClock()
    store = FlakyStore(clock=clock)
    beats = asyncio.Event()

    def beat() -> None:
        clock.advance(4)  # store time passes between heartbeats
        if store.calls["heartbeat"] >= 4:
            beats.set()

    store.on_heartbeat = beat
    probe = Probe()

    async def slow(request: Any) -> Any:
        await beats.wait()
        return PlainTextResponse("done")

    config = IdempotencyConfig(lease_ttl=10.0, heartbeat_every=3.0)
    mw = wrap(make_app(probe, slow), store, config=config, clock=FakeClock())
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await beats.wait()
        # 16 s of store time have passed, more than the 10 s lease; the renewals kept it alive.
        dup = await c.post("/payments", json=PAYLOAD, headers=headers())
        first = await original
    assert dup.status_code == 409
    assert first.status_code == 200
    assert store.only().state is State.COMPLETED


async def test_heartbeat_failures_do_not_stop_the_handler() -> None:
    store = FlakyStore()
    store.fail.add("heartbeat")
    probe = Probe()
    done = asyncio.Event()

    async def slow(request: Any) -> Any:
        while store.calls.get("heartbeat", 0) < 3:
            await asyncio.sleep(0)
        done.set()
        return PlainTextResponse("done")

    config = IdempotencyConfig(lease_ttl=10.0, heartbeat_every=3.0)
    async with client(wrap(make_app(probe, slow), store, config=config, clock=FakeClock())) as c:
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert r.status_code == 200
    assert done.is_set()
    assert store.only().state is State.COMPLETED


async def test_cancellation_marks_the_record_abandoned() -> None:
    store = MemoryStore()
    probe = Probe()
    probe.hold()
    mw = wrap(make_app(probe), store)
    async with client(mw) as c:
        task = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (record,) = store._records.values()
        assert record.state is State.ABANDONED
        r = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert r.status_code == 500
    assert r.json()["type"].endswith("/idempotency-outcome-unknown")
    assert probe.calls == 1


async def test_background_purge_runs_on_schedule() -> None:
    clock = FakeClock()
    store = FlakyStore()
    mw = wrap(make_app(Probe()), store, clock=clock, purge_interval=10.0)
    async with client(mw) as c:
        await c.post("/payments", json=PAYLOAD, headers=headers())
        assert store.calls.get("purge", 0) == 0
        clock.advance(11)
        await c.post("/payments", json=PAYLOAD, headers=headers(key="k-2"))
        await asyncio.gather(*mw._background)
        await c.post("/payments", json=PAYLOAD, headers=headers(key="k-3"))
    assert store.calls["purge"] == 1
