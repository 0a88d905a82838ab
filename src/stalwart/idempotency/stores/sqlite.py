"""``SQLiteStore``: the embedded default store, safe across processes on one host (spec §2.16.2).

- WAL journal, ``synchronous=FULL`` by default (correctness over speed: every commit is on disk before the
  handler runs or the response is sent, so at-most-once survives a power loss), a busy timeout (default 5 s).
  ``synchronous="NORMAL"`` is the documented faster option: in WAL mode a commit then survives a crash or kill of
  the application (the data is in the OS), but an OS crash or power loss can roll back the last commits; a claim
  lost that way lets a retry run the handler again.
- Every write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so a transaction that
  reads and then writes cannot fail with ``SQLITE_BUSY`` on the lock upgrade. The claim reads the record, applies
  the pure decision of :mod:`.._record` and writes, all inside that one immediate transaction, which is as atomic
  as the spec's ``INSERT … ON CONFLICT DO NOTHING`` + ``SELECT`` and also covers the abandon/reclaim of an expired
  lease. CAS writes are ``UPDATE … WHERE record_id=? AND owner_token=? AND fence=?`` checked by the changed-row count.
- Blocking sqlite3 calls run in one worker thread per store (never on the event loop).
- The fence counter and a generated scope secret live in a meta table, so every process on the host shares them.
- A lock held past the busy timeout, or any sqlite3 error, raises :class:`~stalwart.StoreUnavailable` (HTTP 503).
- Never put the file on a network filesystem: SQLite's locking is not reliable there.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from stalwart._clock import SYSTEM_CLOCK
from stalwart._config import to_units
from stalwart._exceptions import StoreUnavailable
from stalwart.idempotency._record import (
    ClaimAction,
    ClaimResult,
    Record,
    StoredResponse,
    decide_claim,
    encode_headers,
    new_record,
    reclaim_record,
)

from ._common import decode_record_row, wall_clock

__all__ = ["SQLiteStore"]

_MAX_BUSY_MS = 2**31 - 1  # SQLite's busy timeout is a C int of milliseconds; a larger one reads as 0 (no waiting)

T = TypeVar("T")

_COLUMNS = (
    "record_id, state, fingerprint, fp_version, owner_token, fence, attempt, lease_expires_at, created_at, "
    "updated_at, expires_at, completed_at, outcome, status, headers, body, body_omitted, schema_version"
)


# SQL templates: ``{r}`` and ``{m}`` are the records and meta table names (validated as identifiers in __init__),
# ``{c}`` the column list.
_SQL = {
    "meta_table": "CREATE TABLE IF NOT EXISTS {m} (name TEXT PRIMARY KEY NOT NULL, value NOT NULL)",
    "records_table": """CREATE TABLE IF NOT EXISTS {r} (
        record_id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, fingerprint BLOB NOT NULL,
        fp_version INTEGER NOT NULL, owner_token TEXT NOT NULL, fence INTEGER NOT NULL,
        attempt INTEGER NOT NULL, lease_expires_at REAL NOT NULL, created_at REAL NOT NULL,
        updated_at REAL NOT NULL, expires_at REAL NOT NULL, completed_at REAL, outcome TEXT,
        status INTEGER, headers BLOB NOT NULL, body BLOB NOT NULL, body_omitted INTEGER NOT NULL,
        schema_version INTEGER NOT NULL) WITHOUT ROWID""",
    "expires_index": "CREATE INDEX IF NOT EXISTS {r}_expires ON {r} (expires_at)",
    "abandoned_index": "CREATE INDEX IF NOT EXISTS {r}_abandoned ON {r} (updated_at) WHERE state = 'abandoned'",
    "init_fence": "INSERT OR IGNORE INTO {m} VALUES ('fence', 0)",
    "init_secret": "INSERT OR IGNORE INTO {m} VALUES ('secret', randomblob(32))",
    "secret": "SELECT value FROM {m} WHERE name = 'secret'",
    "next_fence": "UPDATE {m} SET value = value + 1 WHERE name = 'fence' RETURNING value",
    "select": "SELECT {c} FROM {r} WHERE record_id = ?",
    "write": "INSERT OR REPLACE INTO {r} ({c}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "abandon_expired": "UPDATE {r} SET state = 'abandoned', outcome = 'unknown', updated_at = ? "
    "WHERE record_id = ? AND owner_token = ? AND fence = ?",
    # CAS statements: ?1 record_id, ?2 now, ?3 owner_token, ?4 fence, then statement-specific values.
    "heartbeat": "UPDATE {r} SET lease_expires_at = ?2 + ?5, updated_at = ?2, "
    "expires_at = max(expires_at, ?2 + ?5 + ?6) "
    "WHERE record_id = ?1 AND owner_token = ?3 AND fence = ?4 AND state = 'in_progress' AND expires_at > ?2",
    "complete": "UPDATE {r} SET state = 'completed', updated_at = ?2, completed_at = ?2, expires_at = ?2 + ?5, "
    "outcome = ?6, status = ?7, headers = ?8, body = ?9, body_omitted = ?10 "
    "WHERE record_id = ?1 AND owner_token = ?3 AND fence = ?4 AND state != 'completed' AND expires_at > ?2",
    "release": "DELETE FROM {r} "
    "WHERE record_id = ?1 AND owner_token = ?3 AND fence = ?4 AND state != 'completed' AND expires_at > ?2",
    "abandon": "UPDATE {r} SET state = 'abandoned', outcome = 'unknown', updated_at = ?2 "
    "WHERE record_id = ?1 AND owner_token = ?3 AND fence = ?4 AND state = 'in_progress' AND expires_at > ?2",
    "purge": "DELETE FROM {r} WHERE record_id IN (SELECT record_id FROM {r} WHERE expires_at <= ? LIMIT ?)",
    "abandoned": "SELECT {c} FROM {r} WHERE state = 'abandoned' AND expires_at > ? ORDER BY updated_at LIMIT ?",
}


class SQLiteStore:
    """An :class:`~stalwart.idempotency.IdempotencyStore` in one SQLite file shared by the host's processes.

    Args:
        path: the database file (created when missing); default ``"stalwart-idempotency.sqlite3"``.
        busy_timeout: seconds to wait for another process's write lock before giving up with
            :class:`~stalwart.StoreUnavailable` (default 5.0; 0: no waiting; rounded up to the millisecond, at most
            2**31 - 1 ms, about 24.8 days, the most SQLite takes).
        clock: the store clock, epoch seconds (default: the host's wall clock); tests pass a controllable one.
        table: the table name prefix (default ``"stalwart_idempotency"``); letters, digits and ``_`` only.
        synchronous: SQLite's ``synchronous`` setting, ``"FULL"`` (default, spec §2.16.2: each commit is flushed
            to disk; two flushes per executed request) or ``"NORMAL"`` (WAL commits flushed only at checkpoints:
            durable against application crashes, not against an OS crash or power loss, which can lose the last
            claims and let their retries run again).

    Raises:
        ValueError: an invalid ``busy_timeout``, ``table`` or ``synchronous``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "stalwart-idempotency.sqlite3",
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = wall_clock,
        table: str = "stalwart_idempotency",
        synchronous: str = "FULL",
    ) -> None:
        if not table.replace("_", "").isalnum() or not table.isascii():
            raise ValueError(f"table must contain only ASCII letters, digits and '_', got {table!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.synchronous = synchronous.upper()
        self.path = os.fspath(path)
        self._busy_ms = to_units(busy_timeout, "busy_timeout", per_second=1000, maximum=_MAX_BUSY_MS, allow_zero=True)
        self._clock = clock
        names = {"r": f"{table}_records", "m": f"{table}_meta", "c": _COLUMNS}
        self._sql = {name: sql.format(**names) for name, sql in _SQL.items()}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stalwart-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- plumbing -------------------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("SQLiteStore is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store failed: {exc}") from exc
        except RuntimeError as exc:  # executor shut down
            if self._closed:
                raise StoreUnavailable("SQLiteStore is closed") from exc
            raise

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Runs on the store's single worker thread, which serialises every use of the connection.
        conn = self._conn
        if conn is None:
            conn = self._conn = self._connect()
        try:
            return fn(conn)
        finally:
            if self._conn is conn and conn.in_transaction:  # (aclose() closes and drops the connection)
                self._end_transaction(conn)

    def _end_transaction(self, conn: sqlite3.Connection) -> None:
        """Roll back a transaction a call left open: its ``COMMIT`` (or its rollback) failed.

        A failed ``COMMIT`` (``SQLITE_BUSY``, a full disk, an I/O error on the fsync) can leave the transaction
        active; SQLite asks for an explicit ``ROLLBACK``. Left open, the connection would refuse every later
        ``BEGIN``, keep the write lock from the host's other processes and read its own uncommitted writes. When even
        the rollback fails, the connection is closed (which rolls back) and the next call opens a new one.
        """
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._conn = None
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self._busy_ms / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self._ensure_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")  # validated in __init__
            with _immediate(conn):
                for name in ("meta_table", "records_table", "expires_index", "abandoned_index"):
                    conn.execute(self._sql[name])
                conn.execute(self._sql["init_fence"])
                conn.execute(self._sql["init_secret"])
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode, waiting out a concurrent switch for up to ``busy_timeout``.

        The mode is persistent, so a file already in WAL mode needs no switch. A switch needs an exclusive lock, and
        when connections race for it SQLite answers ``SQLITE_BUSY`` at once rather than calling the busy handler
        (waiting could deadlock), so stores opening a new file together must retry here.
        """
        give_up = SYSTEM_CLOCK.monotonic() + self._busy_ms / 1000
        pause = 0.005
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                    return
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or SYSTEM_CLOCK.monotonic() >= give_up:
                    raise
            SYSTEM_CLOCK.sleep(pause)  # on the store's worker thread, never the event loop
            pause = min(pause * 2, 0.1)

    def _row(self, conn: sqlite3.Connection, record_id: str) -> Record | None:
        row = conn.execute(self._sql["select"], (record_id,)).fetchone()
        return None if row is None else _decode(row)

    def _next_fence(self, conn: sqlite3.Connection) -> int:
        row = conn.execute(self._sql["next_fence"]).fetchone()
        return int(row[0])

    def _write(self, conn: sqlite3.Connection, r: Record) -> None:
        conn.execute(self._sql["write"], _encode(r))

    # -- transitions ----------------------------------------------------------------------------------------------

    async def claim(
        self,
        record_id: str,
        *,
        fingerprint: bytes,
        fp_version: int,
        owner_token: str,
        lease_ttl: float,
        retention: float,
        reclaim: bool = False,
    ) -> ClaimResult:
        """See :meth:`IdempotencyStore.claim`."""

        def run(conn: sqlite3.Connection) -> ClaimResult:
            with _immediate(conn):
                now = self._clock()
                current = self._row(conn, record_id)
                action = decide_claim(
                    current,
                    fingerprint=fingerprint,
                    fp_version=fp_version,
                    owner_token=owner_token,
                    now=now,
                    reclaim=reclaim,
                )
                if action is ClaimAction.INSERT:
                    record = new_record(
                        record_id,
                        fingerprint=fingerprint,
                        fp_version=fp_version,
                        owner_token=owner_token,
                        fence=self._next_fence(conn),
                        now=now,
                        lease_ttl=lease_ttl,
                        retention=retention,
                    )
                    self._write(conn, record)
                    return ClaimResult(True, record, now)
                assert current is not None
                if action is ClaimAction.OWN:
                    return ClaimResult(True, current, now)
                if action is ClaimAction.RECLAIM:
                    record = reclaim_record(
                        current,
                        owner_token=owner_token,
                        fence=self._next_fence(conn),
                        now=now,
                        lease_ttl=lease_ttl,
                        retention=retention,
                    )
                    self._write(conn, record)
                    return ClaimResult(True, record, now)
                if action is ClaimAction.ABANDON:
                    conn.execute(self._sql["abandon_expired"], (now, record_id, current.owner_token, current.fence))
                    current = self._row(conn, record_id)
                    assert current is not None
                return ClaimResult(False, current, now)

        return await self._run(run)

    async def _cas(self, statement: str, record_id: str, owner_token: str, fence: int, *extra: Any) -> bool:
        sql = self._sql[statement]

        def run(conn: sqlite3.Connection) -> bool:
            with _immediate(conn):
                return conn.execute(sql, (record_id, self._clock(), owner_token, fence, *extra)).rowcount == 1

        return await self._run(run)

    async def heartbeat(
        self, record_id: str, *, owner_token: str, fence: int, lease_ttl: float, retention: float
    ) -> bool:
        """See :meth:`IdempotencyStore.heartbeat`."""
        return await self._cas("heartbeat", record_id, owner_token, fence, lease_ttl, retention)

    async def complete(
        self, record_id: str, *, owner_token: str, fence: int, response: StoredResponse, retention: float
    ) -> bool:
        """See :meth:`IdempotencyStore.complete`."""
        return await self._cas(
            "complete",
            record_id,
            owner_token,
            fence,
            retention,
            response.outcome.value,
            response.status,
            encode_headers(response.headers),
            b"" if response.body_omitted else response.body,
            int(response.body_omitted),
        )

    async def release(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """See :meth:`IdempotencyStore.release`."""
        return await self._cas("release", record_id, owner_token, fence)

    async def abandon(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """See :meth:`IdempotencyStore.abandon`."""
        return await self._cas("abandon", record_id, owner_token, fence)

    # -- reads and maintenance ------------------------------------------------------------------------------------

    async def get(self, record_id: str) -> Record | None:
        """See :meth:`IdempotencyStore.get`."""

        def run(conn: sqlite3.Connection) -> Record | None:
            record = self._row(conn, record_id)
            return None if record is None or record.expires_at <= self._clock() else record

        return await self._run(run)

    async def now(self) -> float:
        """The store clock, epoch seconds."""
        return self._clock()

    async def purge(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` records past their retention in one immediate transaction (spec §2.15)."""

        def run(conn: sqlite3.Connection) -> int:
            with _immediate(conn):
                return conn.execute(self._sql["purge"], (self._clock(), limit)).rowcount

        return await self._run(run)

    async def list_abandoned(self, *, limit: int = 100) -> list[Record]:
        """Up to ``limit`` abandoned records, oldest first."""

        def run(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(self._sql["abandoned"], (self._clock(), limit)).fetchall()
            return [_decode(row) for row in rows]

        return await self._run(run)

    async def default_secret(self) -> bytes:
        """The scope secret generated once and kept in the database file (shared by every process on the host)."""

        def run(conn: sqlite3.Connection) -> bytes:
            row = conn.execute(self._sql["secret"]).fetchone()
            return bytes(row[0])

        return await self._run(run)

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread."""
        if self._closed:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        try:
            if self._conn is not None:
                await self._run(run)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


class _immediate:  # noqa: N801 - used like a function
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")  # on failure the store's _call rolls back whatever is still open
        elif self.conn.in_transaction:  # SQLite may already have rolled back (SQLITE_FULL, I/O errors)
            self.conn.execute("ROLLBACK")


def _encode(r: Record) -> tuple[Any, ...]:
    return (
        r.record_id,
        r.state.value,
        r.fingerprint,
        r.fp_version,
        r.owner_token,
        r.fence,
        r.attempt,
        r.lease_expires_at,
        r.created_at,
        r.updated_at,
        r.expires_at,
        r.completed_at,
        None if r.outcome is None else r.outcome.value,
        r.status,
        encode_headers(r.headers),
        r.body,
        int(r.body_omitted),
        r.schema_version,
    )


def _decode(row: tuple[Any, ...]) -> Record:
    return decode_record_row(row, float)
