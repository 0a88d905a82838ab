"""Regression: SQLite stores opening one new database file at the same moment failed with "database is locked".

Each new connection ran ``PRAGMA journal_mode = WAL``. Switching the journal mode needs an exclusive lock, and when two
connections race for it SQLite answers ``SQLITE_BUSY`` at once instead of calling the busy handler (waiting could
deadlock), so ``busy_timeout`` did not help: two processes (or two stores) starting together on a fresh file made one
of them fail its first request with 503. Seen as a flaky
``test_two_stores_on_one_file_share_records_fences_and_secret``.
Now a connection skips the switch when the file is already in WAL mode (the mode is persistent) and retries a busy
switch until ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from stalwart.idempotency import SQLiteStore


async def _first_claims(path: Path, stores: int) -> int:
    opened = [SQLiteStore(path) for _ in range(stores)]
    try:
        results = await asyncio.gather(
            *(
                s.claim(
                    secrets.token_hex(8),
                    fingerprint=b"f" * 32,
                    fp_version=1,
                    owner_token=secrets.token_hex(8),
                    lease_ttl=30.0,
                    retention=60.0,
                )
                for s in opened
            )
        )
    finally:
        for s in opened:
            await s.aclose()
    return sum(r.claimed for r in results)


async def test_many_stores_open_a_new_file_together(tmp_path: Path) -> None:
    for round_ in range(25):
        assert await _first_claims(tmp_path / f"s{round_}.db", stores=8) == 8
