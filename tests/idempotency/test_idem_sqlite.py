"""SQLiteStore specifics (spec §2.16.2): several processes on one file, WAL, busy locks → 503, never blocking."""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import idem_procs
import pytest

from stalwart import StoreUnavailable
from stalwart.idempotency import FP_VERSION, RecordDecodeError
from stalwart.idempotency.stores import SQLiteStore


async def claim(store: SQLiteStore, rid: str, owner: str | None = None) -> bool:
    result = await store.claim(
        rid,
        fingerprint=b"\x01" * 32,
        fp_version=FP_VERSION,
        owner_token=owner or secrets.token_hex(16),
        lease_ttl=60.0,
        retention=600.0,
    )
    return result.claimed


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="table"):
        SQLiteStore("x.db", table="t; DROP TABLE x")
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStore("x.db", busy_timeout=-1)
    for bad in ("OFF", "EXTRA", "full; DROP TABLE x", "", None):
        with pytest.raises(ValueError, match="synchronous"):
            SQLiteStore("x.db", synchronous=bad)  # type: ignore[arg-type]


async def test_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await claim(store, "r")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    synchronous = await store._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
    assert synchronous == 2  # FULL
    await store.aclose()


@pytest.mark.parametrize(("setting", "expected"), [("NORMAL", 1), ("normal", 1), ("FULL", 2)])
async def test_synchronous_option(tmp_path: Path, setting: str, expected: int) -> None:
    store = SQLiteStore(tmp_path / "s.db", synchronous=setting)
    assert await claim(store, "r")
    assert await store._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == expected
    assert await store._run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    assert not await claim(store, "r")
    await store.aclose()


async def test_two_stores_on_one_file_share_records_fences_and_secret(tmp_path: Path) -> None:
    a, b = SQLiteStore(tmp_path / "s.db"), SQLiteStore(tmp_path / "s.db")
    try:
        rids = [secrets.token_hex(8) for _ in range(10)]
        results = await asyncio.gather(*(claim(s, rid) for rid in rids for s in (a, b)))
        assert sum(results) == len(rids)  # each record claimed exactly once across the two stores
        assert await a.default_secret() == await b.default_secret()
        ra = await a.get(rids[0])
        rb = await b.get(rids[1])
        assert ra is not None
        assert rb is not None
        assert ra.fence != rb.fence
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.slow
def test_claims_from_several_processes_have_one_winner_each(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    rids = [secrets.token_hex(8) for _ in range(30)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=ctx) as pool:
        results = list(pool.map(idem_procs.sqlite_claims, [path] * 4, [rids] * 4))
        secrets_seen = set(pool.map(idem_procs.sqlite_secret, [path] * 4))
    won = [item for result in results for item in result]
    assert sorted(rid for rid, _ in won) == sorted(rids)
    fences = [fence for _, fence in won]
    assert len(set(fences)) == len(fences)
    assert len(secrets_seen) == 1


async def test_a_held_lock_gives_store_unavailable_never_a_claim(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path, busy_timeout=0.05)
    await claim(store, "warm-up")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable) as info:
            await claim(store, "r")
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        raw.execute("ROLLBACK")
        raw.close()
    assert await store.get("r") is None
    assert await claim(store, "r")
    await store.aclose()


async def test_waiting_for_a_lock_does_not_block_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path, busy_timeout=30.0)
    await claim(store, "warm-up")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    task = asyncio.create_task(claim(store, "r"))
    ticks = 0
    for _ in range(50):  # the loop keeps running while the claim waits in the worker thread
        await asyncio.sleep(0)
        ticks += 1
    assert ticks == 50
    assert not task.done()
    raw.execute("ROLLBACK")
    raw.close()
    assert await task
    await store.aclose()


async def test_undecodable_records_raise_record_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    for rid in ("r1", "r2", "r3", "r4"):
        await claim(store, rid)
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE stalwart_idempotency_records SET schema_version = 99 WHERE record_id = 'r1'")
        raw.execute("UPDATE stalwart_idempotency_records SET headers = x'00' WHERE record_id = 'r2'")
        raw.execute("UPDATE stalwart_idempotency_records SET state = 'bogus' WHERE record_id = 'r3'")
        raw.execute("UPDATE stalwart_idempotency_records SET outcome = 'bogus' WHERE record_id = 'r4'")
    for rid in ("r1", "r2", "r3", "r4"):
        with pytest.raises(RecordDecodeError):
            await store.get(rid)
        with pytest.raises(RecordDecodeError):
            await claim(store, rid)
    await store.aclose()


async def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await claim(store, "r")
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreUnavailable):
        await claim(store, "r")


async def test_custom_table_prefix(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path, table="myapp_idem")
    await claim(store, "r")
    await store.aclose()
    with sqlite3.connect(path) as raw:
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"myapp_idem_records", "myapp_idem_meta"} <= names


async def test_an_unwritable_path_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "s.db")
    with pytest.raises(StoreUnavailable):
        await claim(store, "r")
    await store.aclose()
