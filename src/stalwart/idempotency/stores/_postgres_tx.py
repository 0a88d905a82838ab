# Store engineer's file: see git log before rewriting.
"""Transactional mode of :class:`~stalwart.idempotency.stores.postgres.PostgresStore` (spec §2.16.4, G5).

One transaction per request holds ``pg_try_advisory_xact_lock`` on the record, the handler's business writes and,
at the end, the COMPLETED record; the response is sent only after the commit. A crash or an exception rolls
everything back and the lock goes with the session, so no lease, heartbeat or fence is needed.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection

from stalwart._exceptions import StoreUnavailable
from stalwart.idempotency._record import Record, StoredResponse

from ._postgres_sql import decode_row, response_params

__all__ = ["PostgresTransaction", "abort"]

logger = logging.getLogger("stalwart")


class PostgresTransaction:
    """One request's transaction in transactional mode (spec §2.16.4), from :meth:`PostgresStore.transaction`.

    The middleware checks :attr:`acquired` (False: another request holds the key, answer 409 at once) and
    :attr:`existing` (a committed record: replay it, 422 on another fingerprint, 500 outcome-unknown when
    abandoned, 409 while another mode's claim is in progress). Otherwise it hands :attr:`connection` to the
    handler (``scope["state"]``), buffers the whole response, and calls :meth:`complete` before sending anything:
    the completed record and the handler's writes commit together, or neither does (G5). For a response that must
    not be stored (the spec's release cases, an exception), it calls :meth:`rollback` or just leaves the block.

    The handler must not commit or roll back the connection itself (psycopg refuses ``commit()`` inside the block;
    SQL ``COMMIT`` or ``ROLLBACK`` would end the transaction and the advisory lock with it, so :meth:`complete`
    refuses to store anything then); its own ``async with conn.transaction()`` blocks become savepoints. No lease,
    heartbeat or fence is needed: a crashed process's session ends and its transaction rolls back with the advisory
    lock.

    Attributes:
        connection: the transaction's connection, for the handler's business writes.
        record_id: the scope HMAC.
        acquired: whether ``pg_try_advisory_xact_lock`` succeeded.
        existing: the committed, unexpired record for the key (None when absent or when the lock was not taken).
        now: the server's clock at the start of the transaction, epoch seconds.
        open: True until the transaction is committed or rolled back.
    """

    __slots__ = (
        "_began",
        "_fingerprint",
        "_fp_version",
        "_insert",
        "_same",
        "_stack",
        "_store_limits",
        "acquired",
        "connection",
        "existing",
        "now",
        "open",
        "record_id",
    )

    def __init__(
        self,
        stack: AsyncExitStack,
        connection: AsyncConnection[Any],
        *,
        insert: bytes,
        same: bytes,
        store_limits: tuple[bytes, str],
        began: datetime,
        record_id: str,
        fingerprint: bytes,
        fp_version: int,
        acquired: bool,
        existing: Record | None,
        now: float,
    ) -> None:
        self._stack, self.connection, self._insert, self._same = stack, connection, insert, same
        self._store_limits = store_limits  # (statement, milliseconds) bounding the insert and the commit
        self._began = began  # the transaction's now(): identifies it (and so the lock) until its end
        self.record_id, self._fingerprint, self._fp_version = record_id, fingerprint, fp_version
        self.acquired, self.existing, self.now = acquired, existing, now
        self.open = True

    async def complete(self, response: StoredResponse, *, retention: float) -> Record:
        """Insert the COMPLETED record in the transaction and commit it with the handler's writes.

        Only after this returns may the response be sent. A record past its retention is replaced. The insert and
        the COMMIT run with the transaction's ``store_timeout`` as their ``statement_timeout`` and ``lock_timeout``,
        whatever the handler's limits: a row locked elsewhere (a concurrent insert of the key, a purge or a
        standard-mode claim holding it) or a stuck server fails them (StoreUnavailable) instead of hanging.

        Returns:
            The committed record (``attempt`` 1, a fresh fence).

        Raises:
            StoreUnavailable: the insert or the commit failed, the handler left the transaction aborted, or a live
                record for the key appeared meanwhile (written by a standard-mode claim); everything is rolled
                back, so the request may be retried (an ambiguous commit, e.g. a lost connection during COMMIT,
                is resolved by the retry: it finds the record or runs again).
            RuntimeError: the transaction is no longer open, or the lock was not acquired; or the handler ended
                the transaction itself (SQL ``COMMIT``/``ROLLBACK`` on :attr:`connection`): the advisory lock went
                with it, its writes may be committed without the record, and nothing is stored.
        """
        if not self.open or not self.acquired:
            raise RuntimeError("complete() needs an open transaction that holds the advisory lock")
        self.open = False
        params = {
            "rid": self.record_id,
            "fp": self._fingerprint,
            "fpv": self._fp_version,
            "owner": secrets.token_hex(16),
            "began": self._began,
            **response_params(response, retention),
        }
        try:
            status = self.connection.info.transaction_status
            if status == psycopg.pq.TransactionStatus.INERROR:
                raise StoreUnavailable("the handler left the idempotency transaction aborted; nothing was committed")
            if status != psycopg.pq.TransactionStatus.INTRANS:
                raise _ended()
            limits, store_ms = self._store_limits
            await self.connection.execute(limits, {"store_timeout": store_ms})
            row = await (await self.connection.execute(self._insert, params)).fetchone()
            if row is None:
                same = await (await self.connection.execute(self._same, (self._began,))).fetchone()
                if not (same and same[0]):
                    raise _ended()
                raise StoreUnavailable("a live record for this key was written outside the transaction")
            record = decode_row(row)
        except BaseException as exc:
            await abort(self._stack, exc)
            if isinstance(exc, psycopg.Error):
                raise StoreUnavailable(f"PostgreSQL store failed: {exc}") from exc
            raise
        try:
            await self._stack.aclose()  # COMMIT, then the connection returns to the pool
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL commit failed: {exc}") from exc
        return record

    async def rollback(self) -> None:
        """Roll back the handler's writes (the spec's release); the key stays absent. Idempotent."""
        if not self.open:
            return
        self.open = False
        try:
            await self._stack.__aexit__(psycopg.Rollback, psycopg.Rollback(), None)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL rollback failed: {exc}") from exc


def _ended() -> RuntimeError:
    return RuntimeError(
        "the handler ended the idempotency transaction itself (COMMIT or ROLLBACK on state.connection): its advisory "
        "lock went with it and its writes may be committed without the record; nothing was stored"
    )


async def abort(stack: AsyncExitStack, exc: BaseException) -> None:
    """Leave a transaction's exit stack after ``exc`` (psycopg rolls back and the connection returns to the pool).

    A failing rollback means a broken session, which the server rolls back itself, so its error never replaces
    ``exc``.
    """
    try:
        await stack.__aexit__(type(exc), exc, exc.__traceback__)
    except psycopg.Error as rollback_error:
        logger.debug("rollback after %r failed: %s", exc, rollback_error)
