"""Regression: a failed ``COMMIT`` left SQLiteStore's connection inside its transaction for good.

Every write of the store runs ``BEGIN IMMEDIATE`` … ``COMMIT``, and only an exception *inside* the block was rolled
back. When the ``COMMIT`` itself failed — ``SQLITE_BUSY`` (which leaves the transaction active, per SQLite's docs),
``SQLITE_FULL`` or an I/O error on the fsync of ``synchronous=FULL`` — the connection stayed in the transaction:

- every later call failed with "cannot start a transaction within a transaction": a permanent 503 until restart;
- the connection kept the database's write lock, so every other process on the host got 503 as well;
- reads on the connection saw the uncommitted record of the failed claim as if it existed.

SQLite asks applications to answer such errors with an explicit ``ROLLBACK`` ("Response To Errors Within A
Transaction", sqlite.org/lang_transaction.html). The store now ends any transaction a call leaves open, and replaces
the connection when even the rollback fails. The failures are injected with a connection subclass (a real disk-full
or lost-lock COMMIT cannot be produced on demand).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from stalwart import StoreUnavailable
from stalwart.idempotency import Outcome, SQLiteStore, StoredResponse

CLAIM = {"fingerprint": b"f" * 32, "fp_version": 1, "lease_ttl": 30.0, "retention": 60.0}


class FlakyConnection(sqlite3.Connection):
    """Fails the next ``fail_commits`` COMMITs (before running them, as SQLITE_BUSY leaves it) and ROLLBACKs."""

    fail_commits = 0
    fail_rollbacks = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and FlakyConnection.fail_commits:
            FlakyConnection.fail_commits -= 1
            raise sqlite3.OperationalError("database is locked")
        if sql == "ROLLBACK" and FlakyConnection.fail_rollbacks:
            FlakyConnection.fail_rollbacks -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> type[FlakyConnection]:
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=FlakyConnection, **k))
    monkeypatch.setattr(FlakyConnection, "fail_commits", 0)
    monkeypatch.setattr(FlakyConnection, "fail_rollbacks", 0)
    return FlakyConnection


async def test_a_failed_commit_is_rolled_back_and_the_store_keeps_working(
    tmp_path: Path, flaky: type[FlakyConnection]
) -> None:
    store = SQLiteStore(tmp_path / "idem.db")
    try:
        assert (await store.claim("a" * 64, owner_token="o1", **CLAIM)).claimed
        flaky.fail_commits = 1
        with pytest.raises(StoreUnavailable):
            await store.claim("b" * 64, owner_token="o2", **CLAIM)
        assert await store.get("b" * 64) is None  # rolled back, not visible as if claimed
        assert (await store.claim("c" * 64, owner_token="o3", **CLAIM)).claimed
        assert (await store.claim("b" * 64, owner_token="o4", **CLAIM)).claimed  # the failed claim holds nothing
    finally:
        await store.aclose()


async def test_a_failed_commit_does_not_keep_the_write_lock_from_other_processes(
    tmp_path: Path, flaky: type[FlakyConnection]
) -> None:
    path = tmp_path / "idem.db"
    store, other = SQLiteStore(path), SQLiteStore(path, busy_timeout=0.2)
    try:
        assert (await store.claim("a" * 64, owner_token="o1", **CLAIM)).claimed
        assert (await other.claim("z" * 64, owner_token="oz", **CLAIM)).claimed
        flaky.fail_commits = 1
        with pytest.raises(StoreUnavailable):
            await store.claim("b" * 64, owner_token="o2", **CLAIM)
        assert (await other.claim("c" * 64, owner_token="o3", **CLAIM)).claimed
    finally:
        await store.aclose()
        await other.aclose()


async def test_a_failed_completion_commit_can_be_retried(tmp_path: Path, flaky: type[FlakyConnection]) -> None:
    store = SQLiteStore(tmp_path / "idem.db")
    try:
        fence = (await store.claim("a" * 64, owner_token="o1", **CLAIM)).record.fence
        response = StoredResponse(Outcome.RESPONSE, 201, (), b"done")
        flaky.fail_commits = 1
        with pytest.raises(StoreUnavailable):
            await store.complete("a" * 64, owner_token="o1", fence=fence, response=response, retention=60.0)
        assert await store.complete("a" * 64, owner_token="o1", fence=fence, response=response, retention=60.0)
        record = await store.get("a" * 64)
        assert record is not None
        assert record.body == b"done"
    finally:
        await store.aclose()


async def test_a_connection_that_cannot_roll_back_is_replaced(tmp_path: Path, flaky: type[FlakyConnection]) -> None:
    store = SQLiteStore(tmp_path / "idem.db")
    try:
        assert (await store.claim("a" * 64, owner_token="o1", **CLAIM)).claimed
        flaky.fail_commits = 1
        flaky.fail_rollbacks = 1
        with pytest.raises(StoreUnavailable):
            await store.claim("b" * 64, owner_token="o2", **CLAIM)
        assert (await store.claim("c" * 64, owner_token="o3", **CLAIM)).claimed
        assert await store.get("b" * 64) is None
        assert await store.get("a" * 64) is not None
    finally:
        await store.aclose()
