"""MemoryStore specifics (spec §2.15, §2.16.1): bounds, eviction order, never evicting in-progress records."""

from __future__ import annotations

import logging

import pytest
from idem_harness import ManualClock

from stalwart import StoreUnavailable
from stalwart.idempotency import FP_VERSION, Outcome, State, StoredResponse
from stalwart.idempotency.stores import MemoryStore

RESPONSE = StoredResponse(Outcome.RESPONSE, 200, (), b"ok")


async def claim(store: MemoryStore, rid: str, *, lease: float = 60.0, retention: float = 600.0) -> int:
    result = await store.claim(
        rid, fingerprint=b"f", fp_version=FP_VERSION, owner_token="o-" + rid, lease_ttl=lease, retention=retention
    )
    assert result.claimed
    return result.record.fence


async def complete(store: MemoryStore, rid: str, fence: int, retention: float = 600.0) -> None:
    assert await store.complete(rid, owner_token="o-" + rid, fence=fence, response=RESPONSE, retention=retention)


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=0)
    with pytest.raises(ValueError, match="sweep_every"):
        MemoryStore(sweep_every=0)


async def test_expired_records_go_first_then_the_oldest_terminal_ones() -> None:
    clock = ManualClock()
    store = MemoryStore(max_entries=4, clock=clock)
    await complete(store, "old-done", await claim(store, "old-done"))
    clock.advance(1)
    await complete(store, "short", await claim(store, "short", retention=5.0), retention=5.0)
    clock.advance(1)
    await claim(store, "running")
    clock.advance(1)
    await complete(store, "new-done", await claim(store, "new-done"))
    clock.advance(10)  # "short" is past its retention
    await claim(store, "x1")
    assert await store.get("short") is None
    assert await store.get("old-done") is not None
    assert store.evictions == 0
    await claim(store, "x2")  # full: the oldest terminal record goes
    assert await store.get("old-done") is None
    assert await store.get("new-done") is not None
    running = await store.get("running")
    assert running is not None
    assert running.state is State.IN_PROGRESS
    assert store.evictions == 1
    assert len(store) == 4


async def test_a_store_full_of_in_progress_records_refuses_claims() -> None:
    store = MemoryStore(max_entries=3, clock=ManualClock())
    for rid in ("a", "b", "c"):
        await claim(store, rid)
    with pytest.raises(StoreUnavailable, match="full"):
        await claim(store, "d")
    assert all([await store.get(rid) for rid in ("a", "b", "c")])
    # An existing key is still answered.
    seen = await store.claim(
        "a", fingerprint=b"f", fp_version=FP_VERSION, owner_token="other", lease_ttl=60, retention=600
    )
    assert not seen.claimed


async def test_lapsed_leases_are_not_evicted_before_their_retention() -> None:
    clock = ManualClock()
    store = MemoryStore(max_entries=2, clock=clock)
    await claim(store, "a", lease=1.0)
    await claim(store, "b", lease=1.0)
    clock.advance(5)  # leases lapsed, retention not: still in progress, never evicted
    with pytest.raises(StoreUnavailable):
        await claim(store, "c")


async def test_sweep_on_write() -> None:
    clock = ManualClock()
    store = MemoryStore(max_entries=100, clock=clock, sweep_every=2)
    await complete(store, "a", await claim(store, "a", retention=1.0), retention=1.0)
    clock.advance(2)
    assert len(store) == 1
    await claim(store, "b")
    assert len(store) == 1  # the second write swept "a"


def test_warns_when_several_workers_are_configured(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        MemoryStore()
    assert "WEB_CONCURRENCY=4" in caplog.text
    caplog.clear()
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        MemoryStore()
    assert caplog.text == ""
