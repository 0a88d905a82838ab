"""PostgresStore transactional mode at the store level (spec §2.16.4, G5).

The handler's business writes and the completed record commit together or not at all; the advisory lock gives an
immediate "in use" (409) to a concurrent request; a dead session leaves nothing behind; connections never leak.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from idem_durable import postgres_schema
from psycopg import sql

from stalwart import StoreUnavailable
from stalwart.idempotency import FP_VERSION, Outcome, State, StoredResponse
from stalwart.idempotency.stores.postgres import PostgresStore, PostgresTransaction

pytestmark = pytest.mark.integration

FP = b"\x01" * 32
RESPONSE = StoredResponse(Outcome.RESPONSE, 201, ((b"content-type", b"application/json"),), b'{"payment_id": 1}')


class Boom(Exception):
    pass


@pytest.fixture
async def env(request: pytest.FixtureRequest) -> AsyncIterator[tuple[PostgresStore, str, sql.Identifier]]:
    """A store whose pool has ONE connection (a leaked connection makes the next call fail) and a business table."""
    url, schema = postgres_schema(request)
    store = PostgresStore.from_url(url, schema=schema, max_size=1, connect_timeout=1.0)
    payments = sql.Identifier(schema, "payments")
    await store.now()  # creates the schema
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id serial PRIMARY KEY, amount int NOT NULL, "
                "ref int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
            ).format(payments)
        )
    yield store, url, payments
    await store.aclose()


def rid() -> str:
    return secrets.token_hex(32)


def tx(store: PostgresStore, record_id: str, **kw: Any) -> Any:
    return store.transaction(record_id, fingerprint=FP, fp_version=FP_VERSION, **kw)


async def pay(t: PostgresTransaction, payments: sql.Identifier, amount: int, ref: int | None = None) -> None:
    await t.connection.execute(sql.SQL("INSERT INTO {} (amount, ref) VALUES (%s, %s)").format(payments), (amount, ref))


async def amounts(url: str, payments: sql.Identifier) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        rows = await (await conn.execute(sql.SQL("SELECT amount FROM {} ORDER BY id").format(payments))).fetchall()
    return [row[0] for row in rows]


async def test_business_writes_and_the_record_commit_together(env: Any) -> None:
    store, url, payments = env
    r = rid()
    async with tx(store, r) as t:
        assert (t.acquired, t.existing) == (True, None)
        await pay(t, payments, 100)
        assert await amounts(url, payments) == []  # not visible before the commit
        record = await t.complete(RESPONSE, retention=3600.0)
        assert not t.open
    assert await amounts(url, payments) == [100]
    assert (record.state, record.status, record.body, record.headers) == (
        State.COMPLETED,
        201,
        RESPONSE.body,
        RESPONSE.headers,
    )
    stored = await store.get(r)
    assert stored == record
    # A retry sees the committed record (the middleware replays it) and writes nothing.
    async with tx(store, r) as again:
        assert again.acquired
        assert again.existing == record
    assert await amounts(url, payments) == [100]


async def test_rollback_leaves_nothing_and_the_key_new(env: Any) -> None:
    store, url, payments = env
    r = rid()
    async with tx(store, r) as t:
        await pay(t, payments, 100)
        await t.rollback()
        await t.rollback()  # idempotent
    async with tx(store, r) as t:  # leaving the block without complete() also rolls back
        await pay(t, payments, 200)
    assert await amounts(url, payments) == []
    assert await store.get(r) is None
    async with tx(store, r) as t:
        assert (t.acquired, t.existing) == (True, None)


async def test_a_handler_exception_rolls_back_and_propagates_unchanged(env: Any) -> None:
    store, url, payments = env
    r = rid()
    raised = Boom("handler failed")

    async def handler() -> None:
        async with tx(store, r) as t:
            await pay(t, payments, 100)
            raise raised

    with pytest.raises(Boom) as info:
        await handler()
    assert info.value is raised
    assert await amounts(url, payments) == []
    assert await store.get(r) is None


async def test_a_concurrent_request_does_not_get_the_lock(env: Any) -> None:
    store, url, payments = env
    other = PostgresStore.from_url(url, schema=store.schema)
    try:
        r = rid()
        async with tx(store, r) as first:
            await pay(first, payments, 100)
            async with tx(other, r) as second:
                assert not second.acquired  # the middleware answers 409 at once
                assert second.existing is None
                with pytest.raises(RuntimeError):
                    await second.complete(RESPONSE, retention=60.0)
            async with tx(other, rid()) as unrelated:
                assert unrelated.acquired
            await first.complete(RESPONSE, retention=3600.0)
        async with tx(other, r) as third:
            assert third.acquired
            assert third.existing is not None
            assert third.existing.state is State.COMPLETED
        assert await amounts(url, payments) == [100]
    finally:
        await other.aclose()


async def test_a_dead_session_leaves_nothing_behind(env: Any) -> None:
    store, url, payments = env
    other = PostgresStore.from_url(url, schema=store.schema)
    try:
        r = rid()

        async def handler() -> None:
            async with tx(store, r) as t:
                await pay(t, payments, 100)
                pid = t.connection.info.backend_pid
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                    await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # the worker "crashes"
                async with tx(other, r) as retry:
                    assert retry.acquired  # the lock went with the session
                    assert retry.existing is None
                await t.complete(RESPONSE, retention=3600.0)  # a zombie cannot commit

        with pytest.raises(StoreUnavailable):
            await handler()
        assert await amounts(url, payments) == []
        assert await store.get(r) is None  # the pool replaced the dead connection
    finally:
        await other.aclose()


async def test_a_failing_commit_is_store_unavailable_and_applies_nothing(env: Any) -> None:
    store, url, payments = env
    r = rid()
    async with tx(store, rid()) as t:
        await pay(t, payments, 1, ref=7)
        await t.complete(RESPONSE, retention=3600.0)

    async def handler() -> None:
        async with tx(store, r) as t:
            await pay(t, payments, 2, ref=7)  # violates a deferred constraint: only COMMIT fails
            await t.complete(RESPONSE, retention=3600.0)

    with pytest.raises(StoreUnavailable) as info:
        await handler()
    assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)
    assert await amounts(url, payments) == [1]
    assert await store.get(r) is None


async def test_an_aborted_transaction_is_not_committed(env: Any) -> None:
    store, url, payments = env
    r = rid()
    async with tx(store, r) as t:
        await pay(t, payments, 100)
        with pytest.raises(psycopg.errors.UndefinedTable):
            await t.connection.execute("SELECT * FROM no_such_table")
        with pytest.raises(StoreUnavailable, match="aborted"):
            await t.complete(RESPONSE, retention=3600.0)
    assert await amounts(url, payments) == []
    assert await store.get(r) is None


async def test_the_handler_gets_savepoints_and_cannot_commit(env: Any) -> None:
    store, url, payments = env
    async with tx(store, rid()) as t:
        await pay(t, payments, 1)

        async def nested() -> None:
            async with t.connection.transaction():  # a savepoint inside our transaction
                await pay(t, payments, 2)
                raise Boom

        with pytest.raises(Boom):
            await nested()
        with pytest.raises(psycopg.ProgrammingError):
            await t.connection.commit()
        await t.complete(RESPONSE, retention=3600.0)
    assert await amounts(url, payments) == [1]


async def test_session_limits_are_set_for_the_transaction_only(env: Any) -> None:
    store, _, _ = env
    async with tx(store, rid(), statement_timeout=2.5, lock_timeout=None, idle_timeout=30.0) as t:
        rows = [
            (await (await t.connection.execute(f"SHOW {name}")).fetchone())[0]
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        ]
        assert rows == ["2500ms", "0", "30s"]
    async with store.pool.connection() as conn:
        assert (await (await conn.execute("SHOW statement_timeout")).fetchone())[0] == "5s"  # from_url's default


async def test_an_expired_record_is_replaced_but_a_live_one_is_not(env: Any) -> None:
    store, url, payments = env
    expired, live = rid(), rid()
    await store.claim(expired, fingerprint=FP, fp_version=1, owner_token="o", lease_ttl=0.01, retention=0.01)
    await asyncio.sleep(0.05)
    async with tx(store, expired) as t:
        assert t.existing is None
        record = await t.complete(RESPONSE, retention=3600.0)
    assert (record.state, record.attempt) == (State.COMPLETED, 1)
    other = PostgresStore.from_url(url, schema=store.schema)
    try:

        async def handler() -> None:
            async with tx(store, live) as t:
                await pay(t, payments, 5)
                # A standard-mode claim on the same key (a misconfiguration) commits meanwhile.
                claimed = await other.claim(
                    live, fingerprint=FP, fp_version=1, owner_token="o", lease_ttl=30.0, retention=60.0
                )
                assert claimed.claimed
                await t.complete(RESPONSE, retention=3600.0)

        with pytest.raises(StoreUnavailable, match="outside the transaction"):
            await handler()
        assert await amounts(url, payments) == []
        still = await store.get(live)
        assert still is not None
        assert still.state is State.IN_PROGRESS
    finally:
        await other.aclose()


async def test_cancellation_rolls_back_and_returns_the_connection(env: Any) -> None:
    store, url, payments = env
    entered = asyncio.Event()

    async def handler() -> None:
        async with tx(store, rid()) as t:
            await pay(t, payments, 100)
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(handler())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await amounts(url, payments) == []
    async with tx(store, rid()) as t:  # the pool's only connection came back
        assert t.acquired


async def test_advisory_keys_are_stable_signed_64_bit_and_per_table(env: Any) -> None:
    store, url, _ = env
    other = PostgresStore.from_url(url, schema=store.schema, table="other_records")
    r = rid()
    key = store.advisory_key(r)
    assert key == store.advisory_key(r)
    assert -(2**63) <= key < 2**63
    assert other.advisory_key(r) != key
    assert store.advisory_key(rid()) != key
