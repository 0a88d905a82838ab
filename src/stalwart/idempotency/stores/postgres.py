# Store engineer's file: see git log before rewriting.
"""``PostgresStore``: idempotency records in PostgreSQL (psycopg 3 async and a connection pool), spec §2.16.4.

Standard mode (the :class:`~stalwart.idempotency.IdempotencyStore` protocol):

- The claim is its own short transaction, committed before the handler runs (Brandur Leach's phase 1): one
  autocommit statement that reads the committed record and, only when there is none, inserts it with ``INSERT …
  ON CONFLICT (record_id) DO NOTHING RETURNING …``. Fresh keys and replays therefore cost one round trip, and a
  replay draws no fence and attempts no insert. A concurrent insert of the same key
  between the statement's snapshot and its insert leaves both parts empty; the claim then goes to the locked
  second phase, which sees the committed row. When the pure decision
  (:func:`~stalwart.idempotency._record.decide_claim`) needs a write on an existing record (abandon or reclaim an
  expired lease, or reuse a record past its retention), a second short transaction locks the row with
  ``SELECT … FOR UPDATE``, decides again on ``clock_timestamp()`` and writes.
- heartbeat, complete, release and abandon are single compare-and-set statements ``… WHERE record_id = … AND
  owner_token = … AND fence = …`` checked by the row count.
- The clock is the server's (``now()``); fences come from a sequence (``<table>_fence``), so they increase across
  purges and processes.
- :meth:`PostgresStore.purge` deletes expired rows in batches by ``ctid``, skipping rows a claim has locked.
- ``from_url`` sets ``lock_timeout`` and ``statement_timeout`` on its connections so a contended row answers 503
  instead of hanging; with your own pool, set them yourself.
- A pooled connection the server ended while it sat idle in the pool (a restart or failover,
  ``pg_terminate_backend``, ``idle_session_timeout``) is noticed as it is taken (its socket has something to read:
  checked without a round trip, then confirmed with one) and replaced within ``connect_timeout``, instead of failing
  the request with 503.

Transactional mode (:meth:`PostgresStore.transaction`, §2.16.4): the handler's business writes and the completed
record commit in one transaction guarded by ``pg_try_advisory_xact_lock``; see :class:`PostgresTransaction`.

The table, its sequence and indexes are created on first use (``create_schema=True``) under an advisory lock, so
several processes may start at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import select
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from stalwart._config import to_seconds, to_units
from stalwart._exceptions import StoreUnavailable
from stalwart.idempotency._record import (
    SCHEMA_VERSION,
    ClaimAction,
    ClaimResult,
    Record,
    StoredResponse,
    decide_claim,
)

from ._postgres_sql import COLUMN_COUNT, Statements, decode_row, render, response_params
from ._postgres_tx import PostgresTransaction, abort

__all__ = ["PostgresStore", "PostgresTransaction"]

logger = logging.getLogger("stalwart")

_DDL_LOCK = 0x5374_616C_7761_7274  # pg_advisory_xact_lock key serialising schema creation ("Stalwart")
_CLAIM_ROUNDS = 8  # a claim racing deletes of its row retries this often before giving up (503)
_MAX_SETTING_MS = 2**31 - 1  # PostgreSQL duration settings (lock_timeout, statement_timeout, ...) are int32 ms


def _check_name(value: str, parameter: str, max_len: int) -> str:
    if not value or len(value.encode()) > max_len or "\x00" in value:
        raise ValueError(f"{parameter} must be 1 to {max_len} bytes without NUL, got {value!r}")
    return value


def _ms(seconds: float | None, parameter: str) -> str:
    """A PostgreSQL duration setting in milliseconds, rounded up; "0" (no limit) for None.

    Raises:
        TypeError, ValueError: not a duration > 0, or more than 2**31 - 1 ms (PostgreSQL refuses such a setting,
            here when it is given rather than on every connection or transaction).
    """
    if seconds is None:
        return "0"
    return str(to_units(seconds, parameter, per_second=1000, maximum=_MAX_SETTING_MS))


class PostgresStore:
    """An :class:`~stalwart.idempotency.IdempotencyStore` in one PostgreSQL table.

    Build it from a URL (:meth:`from_url`; the store opens, owns and closes that pool) or from an open
    ``psycopg_pool.AsyncConnectionPool`` (the caller keeps ownership; autocommit connections save round trips).
    Every psycopg or pool error raises :class:`~stalwart.StoreUnavailable` with the original as ``__cause__``.

    Args:
        pool: the connection pool.
        schema: the schema holding the table (default ``"public"``; created when missing).
        table: the table name (default ``"stalwart_idempotency"``); the sequence is ``<table>_fence``.
        create_schema: create the schema, table, sequence and indexes on first use (default True).
        connect_timeout: seconds to wait for a pooled connection before raising StoreUnavailable (default 2.0).
        close_pool: close the pool in :meth:`aclose` (default False; ``from_url`` passes True).

    Raises:
        ValueError: an invalid ``schema``, ``table`` or ``connect_timeout``.
    """

    requires_secret = True
    """This store keeps no scope secret: ``IdempotencyMiddleware`` refuses to start (ValueError) without ``secret``."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        schema: str = "public",
        table: str = "stalwart_idempotency",
        create_schema: bool = True,
        connect_timeout: float = 2.0,
        close_pool: bool = False,
    ) -> None:
        self.pool = pool
        self.schema = _check_name(schema, "schema", 63)
        self.table = _check_name(table, "table", 48)
        self.create_schema = create_schema
        self._timeout = to_seconds(connect_timeout, "connect_timeout", allow_zero=False)
        self._close_pool = close_pool
        self._sql: Statements = render(schema, table)
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._lock_salt = f"{schema}.{table}:".encode()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        schema: str = "public",
        table: str = "stalwart_idempotency",
        create_schema: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 2.0,
        lock_timeout: float | None = 2.0,
        statement_timeout: float | None = 5.0,
        **pool_kwargs: Any,
    ) -> PostgresStore:
        """A store with its own pool of autocommit connections to ``url`` (``postgresql://…``), opened on first use.

        Args:
            url: the libpq connection string or URL.
            schema, table, create_schema, connect_timeout: as for the constructor.
            min_size, max_size: pool bounds (defaults 1 and 10). Transactional mode holds one connection per
                in-flight request.
            lock_timeout: seconds a statement waits for a row lock before failing (503); None keeps the server's.
            statement_timeout: seconds a store statement may run; None keeps the server's. Transactional mode
                replaces both for the handler's transaction (see :meth:`transaction`).
            **pool_kwargs: passed to ``AsyncConnectionPool``.

        Both timeouts are rounded up to the millisecond and must be > 0 and at most 2**31 - 1 ms (about 24.8
        days), PostgreSQL's range.

        Raises:
            TypeError, ValueError: an invalid ``schema``, ``table``, ``connect_timeout``, ``lock_timeout`` or
                ``statement_timeout`` (the message names it).
        """
        settings = {"lock_timeout": lock_timeout, "statement_timeout": statement_timeout}
        # None leaves the setting out, so the server's (postgresql.conf, ALTER ROLE/DATABASE ... SET) applies.
        options = " ".join(f"-c {name}={_ms(value, name)}" for name, value in settings.items() if value is not None)
        kwargs = {"autocommit": True, **({"options": options} if options else {}), **pool_kwargs.pop("kwargs", {})}
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=min_size, max_size=max_size, kwargs=kwargs, open=False, **pool_kwargs
        )
        return cls(
            pool,
            schema=schema,
            table=table,
            create_schema=create_schema,
            connect_timeout=connect_timeout,
            close_pool=True,
        )

    def schema_sql(self) -> str:
        """The DDL the store runs on first use (schema, sequence, table, indexes), for migrations run elsewhere.

        Use it with ``create_schema=False`` when the application's role may not create objects.
        """
        return self._sql.ddl.decode().strip()

    # -- plumbing -------------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        if not self._ready:
            await self._prepare()
        try:
            async with self._pooled() as conn:
                yield conn
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL store failed: {exc}") from exc

    @asynccontextmanager
    async def _pooled(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection; one the server ended while it was idle in the pool is replaced (PoolTimeout after
        ``connect_timeout``)."""
        deadline = time.monotonic() + self._timeout
        while True:
            conn = await self.pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
            if await _alive(conn):
                break
            if not conn.closed:
                await conn.close()
            await self.pool.putconn(conn)  # the pool discards it and opens a replacement
        try:
            yield conn
        finally:
            await self.pool.putconn(conn)

    async def _prepare(self) -> None:
        async with self._ready_lock:
            if self._ready:
                return
            try:
                if self._close_pool:
                    await self.pool.open()
                if self.create_schema:
                    async with self._pooled() as conn:
                        row = await (await conn.execute(self._sql.exists)).fetchone()
                        if not (row and row[0]):
                            async with conn.transaction():
                                await conn.execute(b"SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                                await conn.execute(self._sql.ddl)
            except psycopg.Error as exc:
                raise StoreUnavailable(f"PostgreSQL store failed: {exc}") from exc
            self._ready = True

    async def _fetch(self, query: bytes, params: Any) -> Any:
        async with self._connection() as conn:
            return await (await conn.execute(query, params)).fetchone()

    async def _count(self, query: bytes, params: Any) -> int:
        async with self._connection() as conn:
            return (await conn.execute(query, params)).rowcount

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
        """See :meth:`IdempotencyStore.claim` (insert-if-absent, then a locked read when a write is needed)."""
        params = {
            "rid": record_id,
            "fp": fingerprint,
            "fpv": fp_version,
            "owner": owner_token,
            "lease": float(lease_ttl),
            "retention": float(retention),
            "sv": SCHEMA_VERSION,
        }
        for _ in range(_CLAIM_ROUNDS):
            row = await self._fetch(self._sql.claim, params)
            if row is not None:
                inserted, now_dt, current = bool(row[0]), row[1], decode_row(row[2:])
                now = now_dt.timestamp()
                if inserted:
                    return ClaimResult(True, current, now)
                action = _decide(current, now, params, reclaim)
                if action is ClaimAction.OWN:
                    return ClaimResult(True, current, now)
                if action is ClaimAction.NONE:
                    return ClaimResult(False, current, now)
            # The write needs the row lock, or no row came back (a concurrent claim inserted the key after this
            # statement's snapshot, so the insert conflicted and the read saw nothing): phase 2.
            result = await self._claim_locked(params, reclaim)
            if result is not None:
                return result
        raise StoreUnavailable(f"claim of {record_id[:12]}… did not settle after {_CLAIM_ROUNDS} rounds")

    async def _claim_locked(self, params: dict[str, Any], reclaim: bool) -> ClaimResult | None:
        async with self._connection() as conn, conn.transaction():
            row = await (await conn.execute(self._sql.lock_row, (params["rid"],))).fetchone()
            if row is None:
                return None  # deleted (released or purged) meanwhile: insert again
            current, now_dt = decode_row(row[:COLUMN_COUNT]), row[COLUMN_COUNT]
            now = now_dt.timestamp()
            action = _decide(current, now, params, reclaim)
            if action is ClaimAction.OWN:
                return ClaimResult(True, current, now)
            if action is ClaimAction.NONE:
                return ClaimResult(False, current, now)
            query = {
                ClaimAction.INSERT: self._sql.reinsert,
                ClaimAction.RECLAIM: self._sql.reclaim,
                ClaimAction.ABANDON: self._sql.abandon_expired,
            }[action]
            written = await (await conn.execute(query, {**params, "now": now_dt})).fetchone()
            return ClaimResult(action is not ClaimAction.ABANDON, decode_row(written), now)

    async def heartbeat(
        self, record_id: str, *, owner_token: str, fence: int, lease_ttl: float, retention: float
    ) -> bool:
        """See :meth:`IdempotencyStore.heartbeat`."""
        params = {
            "rid": record_id,
            "owner": owner_token,
            "fence": fence,
            "lease": float(lease_ttl),
            "retention": float(retention),
        }
        return await self._count(self._sql.heartbeat, params) == 1

    async def complete(
        self, record_id: str, *, owner_token: str, fence: int, response: StoredResponse, retention: float
    ) -> bool:
        """See :meth:`IdempotencyStore.complete`."""
        params = {"rid": record_id, "owner": owner_token, "fence": fence, **response_params(response, retention)}
        return await self._count(self._sql.complete, params) == 1

    async def release(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """See :meth:`IdempotencyStore.release`."""
        params = {"rid": record_id, "owner": owner_token, "fence": fence}
        return await self._count(self._sql.release, params) == 1

    async def abandon(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """See :meth:`IdempotencyStore.abandon`."""
        params = {"rid": record_id, "owner": owner_token, "fence": fence}
        return await self._count(self._sql.abandon, params) == 1

    # -- reads and maintenance ------------------------------------------------------------------------------------

    async def get(self, record_id: str) -> Record | None:
        """See :meth:`IdempotencyStore.get`."""
        row = await self._fetch(self._sql.get, (record_id,))
        return None if row is None else decode_row(row)

    async def now(self) -> float:
        """The server's clock (``now()``), epoch seconds."""
        row = await self._fetch(self._sql.now, None)
        return float(row[0].timestamp())

    async def purge(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` records past their retention in one short statement (spec §2.15).

        Rows locked by a concurrent claim are skipped, and each row is re-checked as it is deleted, so a live
        record is never removed. Run it periodically (the middleware does); each call is one batch.
        """
        return await self._count(self._sql.purge, (limit,))

    async def list_abandoned(self, *, limit: int = 100) -> list[Record]:
        """Up to ``limit`` abandoned records, oldest first."""
        async with self._connection() as conn:
            rows = await (await conn.execute(self._sql.abandoned, (limit,))).fetchall()
        return [decode_row(row) for row in rows]

    async def default_secret(self) -> None:
        """None: every instance must be configured with the same scope secret."""

    async def aclose(self) -> None:
        """Close the pool when this store created it (:meth:`from_url`)."""
        if self._close_pool:
            await self.pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r}, table={self.table!r})"

    # -- transactional mode ---------------------------------------------------------------------------------------

    def advisory_key(self, record_id: str) -> int:
        """The signed 64-bit ``pg_advisory_xact_lock`` key of ``record_id`` in this table (collisions: false 409s)."""
        digest = hashlib.blake2b(self._lock_salt + record_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    @asynccontextmanager
    async def transaction(
        self,
        record_id: str,
        *,
        fingerprint: bytes,
        fp_version: int,
        statement_timeout: float | None = None,
        lock_timeout: float | None = None,
        idle_timeout: float | None = 60.0,
        store_timeout: float | None = 2.0,
    ) -> AsyncIterator[PostgresTransaction]:
        """Open the transactional-mode transaction for one request (spec §2.16.4); see :class:`PostgresTransaction`.

        Takes a pooled connection, begins a transaction, tries ``pg_try_advisory_xact_lock`` on the record and,
        when it got the lock, reads the committed record. On leaving the block the transaction is rolled back unless
        :meth:`PostgresTransaction.complete` committed it, and the connection returns to the pool; an exception in
        the block propagates after the rollback.

        Args:
            record_id: the scope HMAC.
            fingerprint, fp_version: stored with the completed record.
            statement_timeout: seconds each statement of the handler may run (default None: no limit; the
                middleware passes ``IdempotencyConfig.transaction_statement_timeout``, 30 s by default).
            lock_timeout: seconds the handler's statements wait for locks (default None: no limit; the middleware
                passes ``transaction_lock_timeout``, 2 s by default).
            idle_timeout: ``idle_in_transaction_session_timeout`` in seconds (default 60.0; None: no limit): the
                server ends a session left idle inside the transaction, rolling it back (the middleware passes
                ``transaction_idle_timeout``).
            store_timeout: ``statement_timeout`` and ``lock_timeout`` in seconds of the store's own insert and
                COMMIT in :meth:`PostgresTransaction.complete` (default 2.0; None: no limit; the middleware passes
                the route's ``store_timeout``), so a contended record row fails the commit (StoreUnavailable)
                instead of hanging.

        Raises:
            StoreUnavailable: no connection, or the server failed while opening the transaction.
            TypeError, ValueError: a timeout that is not a duration > 0 of at most 2**31 - 1 ms (about 24.8 days,
                PostgreSQL's range; rounded up to the millisecond), before any connection is taken.
        """
        timeouts = {
            "statement_timeout": _ms(statement_timeout, "statement_timeout"),
            "lock_timeout": _ms(lock_timeout, "lock_timeout"),
            "idle_timeout": _ms(idle_timeout, "idle_timeout"),
        }
        store_ms = _ms(store_timeout, "store_timeout")
        if not self._ready:
            await self._prepare()
        stack = AsyncExitStack()
        try:
            conn = await stack.enter_async_context(self._pooled())
            await stack.enter_async_context(conn.transaction())
            params = {"lock": self.advisory_key(record_id), **timeouts}
            begun: Any = await (await conn.execute(self._sql.tx_begin, params)).fetchone()
            acquired, began = bool(begun[0]), begun[1]
            existing = None
            if acquired:  # read after the lock: a new statement sees what the previous holder committed
                row = await (await conn.execute(self._sql.get, (record_id,))).fetchone()
                existing = None if row is None else decode_row(row)
        except BaseException as exc:
            await abort(stack, exc)
            if isinstance(exc, psycopg.Error):
                raise StoreUnavailable(f"PostgreSQL store failed: {exc}") from exc
            raise
        tx = PostgresTransaction(
            stack,
            conn,
            insert=self._sql.tx_insert,
            same=self._sql.tx_same,
            store_limits=(self._sql.tx_store_limits, store_ms),
            began=began,
            record_id=record_id,
            fingerprint=fingerprint,
            fp_version=fp_version,
            acquired=acquired,
            existing=existing,
            now=float(began.timestamp()),
        )
        try:
            yield tx
        except BaseException as exc:
            if tx.open:  # the handler's exception: roll back, then let it propagate unchanged
                tx.open = False
                await abort(stack, exc)
            raise
        await tx.rollback()


async def _alive(conn: AsyncConnection[Any]) -> bool:
    """False for a pooled connection the server has ended: an idle connection has nothing to read, so a readable
    socket (a FATAL message, the end of the stream) is confirmed with an empty query. No round trip otherwise."""
    pgconn = conn.pgconn
    if pgconn.status != psycopg.pq.ConnStatus.OK:
        return False
    try:
        readable = select.select([pgconn.socket], [], [], 0)[0]
    except (OSError, ValueError, psycopg.Error):
        return False
    if not readable:
        return True
    try:
        await AsyncConnectionPool.check_connection(conn)
    except psycopg.Error:
        return False
    return True


def _decide(current: Record, now: float, params: dict[str, Any], reclaim: bool) -> ClaimAction:
    return decide_claim(
        current,
        fingerprint=params["fp"],
        fp_version=params["fpv"],
        owner_token=params["owner"],
        now=now,
        reclaim=reclaim,
    )
