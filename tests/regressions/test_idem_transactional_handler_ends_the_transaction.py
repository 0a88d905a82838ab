"""Regression: in transactional mode, a handler that ended the idempotency transaction itself with SQL (``COMMIT``,
``ROLLBACK``, ``COMMIT; BEGIN`` ... on ``state.connection``; psycopg refuses only ``conn.commit()``) broke G5 in
silence (spec §2.16.4).

The advisory lock is transaction-scoped, so it went with that transaction: a concurrent duplicate took the lock, saw
no record and ran the handler again. ``complete()`` then inserted the COMPLETED record outside the handler's
transaction (autocommit, or in the handler's new transaction) and reported success:

- after ``COMMIT`` the writes were committed without the record (and a duplicate could run meanwhile);
- after ``ROLLBACK`` the record said 201 and replayed a payment **that was never written**.

``complete()`` now checks that it still runs in the transaction that took the lock (the same transaction start,
``now()``), stores nothing otherwise and raises ``RuntimeError`` naming the fault; the middleware lets it propagate
(a 500 from the framework, like any handler error), and nothing is replayed.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from _idem_asgi import post, wrap
from psycopg import sql

from stalwart.idempotency import FP_VERSION, IdempotencyConfig, Outcome, StoredResponse
from stalwart.idempotency.stores.postgres import PostgresStore

pytestmark = pytest.mark.integration

FP = b"\x02" * 32
RESPONSE = StoredResponse(Outcome.RESPONSE, 201, ((b"content-type", b"application/json"),), b'{"paid": true}')
ENDINGS = [b"COMMIT", b"ROLLBACK", b"COMMIT; BEGIN", b"ROLLBACK; BEGIN", b"END; START TRANSACTION"]


@pytest.fixture
async def env(database_url: str, unique_prefix: str) -> AsyncIterator[tuple[PostgresStore, str, sql.Identifier]]:
    schema = unique_prefix.replace("-", "_")
    store = PostgresStore.from_url(database_url, schema=schema, max_size=2, connect_timeout=1.0)
    payments = sql.Identifier(schema, "payments")
    await store.now()  # creates the schema
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, amount int NOT NULL)").format(payments))
    try:
        yield store, database_url, payments
    finally:
        await store.aclose()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.parametrize("ending", ENDINGS)
async def test_complete_refuses_a_transaction_the_handler_ended(env: Any, ending: bytes) -> None:
    store, _, payments = env
    record_id = secrets.token_hex(32)
    async with store.transaction(record_id, fingerprint=FP, fp_version=FP_VERSION) as tx:
        await tx.connection.execute(sql.SQL("INSERT INTO {} (amount) VALUES (100)").format(payments))
        await tx.connection.execute(ending)
        # The lock went with the handler's transaction: a duplicate could take it now (that cannot be undone).
        with pytest.raises(RuntimeError, match="ended the idempotency transaction"):
            await tx.complete(RESPONSE, retention=3600.0)
        assert not tx.open
    assert await store.get(record_id) is None  # no record outside the handler's transaction, no false replay
    async with store.transaction(record_id, fingerprint=FP, fp_version=FP_VERSION) as again:
        assert (again.acquired, again.existing) == (True, None)  # the connection went back clean


async def test_the_request_fails_and_nothing_is_replayed(env: Any) -> None:
    store, _, payments = env
    runs = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal runs
        runs += 1
        await receive()
        conn = scope["state"]["idempotency"].connection
        await conn.execute(sql.SQL("INSERT INTO {} (amount) VALUES (100)").format(payments))
        await conn.execute(b"ROLLBACK")  # e.g. a "clean-up" copied from code that owned its connection
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b'{"paid": true}'})

    mw = wrap(app, store, config=IdempotencyConfig(transactional=True))
    with pytest.raises(RuntimeError, match="ended the idempotency transaction"):
        await post(mw, key="pay-1")
    second = await post(mw, key="pay-1", swallow=RuntimeError)
    assert second.headers.get(b"idempotent-replayed") is None  # no replay of a payment that was never written
    assert runs == 2
