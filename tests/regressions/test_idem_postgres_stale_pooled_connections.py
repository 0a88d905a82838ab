"""Regression: ``PostgresStore.from_url`` answered 503 to healthy requests after its pooled connections died.

Connections idle in the pool that the server ended (a PostgreSQL restart or failover, ``pg_terminate_backend``,
``idle_session_timeout``, a proxy recycling them) were handed out as they were: each one failed the next request that
took it with "terminating connection due to administrator command", a 503 while the server could decide (spec G4:
503 only when the store *cannot* decide). Seen with the payments example: after a kill of its idle connections the
next three payments got 503. The store now looks at a connection as it takes it: an idle connection has nothing
to read, so a readable socket (the server's FATAL message, the end of the stream) is confirmed with an empty query and
a dead one is replaced within ``connect_timeout``; a live one costs no round trip. (psycopg_pool's own ``check``
costs a round trip per checkout and backs off 1 s, then 2 s, between failed checks: with a whole pool dead it runs
out of the 2 s ``connect_timeout``. Peer reports: psycopg/psycopg #656, #701.) Both modes take connections this way:
standard calls and the transactional mode's transaction.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql

from stalwart.idempotency import FP_VERSION
from stalwart.idempotency.stores.postgres import PostgresStore

pytestmark = pytest.mark.integration

FP = b"\x03" * 32


@pytest.fixture
async def store(database_url: str, unique_prefix: str) -> AsyncIterator[PostgresStore]:
    schema = unique_prefix.replace("-", "_")
    app = f"stale-{secrets.token_hex(4)}"
    s = PostgresStore.from_url(database_url, schema=schema, min_size=3, max_size=3, kwargs={"application_name": app})
    try:
        yield s
    finally:
        await s.aclose()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def kill_pool(store: PostgresStore, database_url: str) -> None:
    """End every session of the store's pool on the server, as a restart would."""
    await store.pool.wait(timeout=5.0)
    assert store.pool.get_stats()["pool_available"] == 3
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        info = store.pool.kwargs["application_name"]
        for _ in range(100):  # the server ends them asynchronously; wait until they are gone
            rows = await (
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (info,)
                )
            ).fetchall()
            if not rows:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the pool's sessions did not end")


async def test_standard_calls_replace_dead_pooled_connections(store: PostgresStore, database_url: str) -> None:
    await store.now()  # opens the pool, creates the schema
    await kill_pool(store, database_url)
    for _ in range(4):  # one per pooled connection, and one more
        record_id = secrets.token_hex(32)
        claim = await store.claim(
            record_id, fingerprint=FP, fp_version=FP_VERSION, owner_token="o", lease_ttl=30.0, retention=60.0
        )
        assert claim.claimed


async def test_transactions_replace_dead_pooled_connections(store: PostgresStore, database_url: str) -> None:
    await store.now()
    await kill_pool(store, database_url)
    for _ in range(4):
        async with store.transaction(secrets.token_hex(32), fingerprint=FP, fp_version=FP_VERSION) as tx:
            assert (tx.acquired, tx.existing) == (True, None)
