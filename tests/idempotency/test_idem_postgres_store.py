"""PostgresStore (standard mode) beyond the shared contract: concurrency, purge, locks, schema, errors (§2.16.4).

Runs against the real PostgreSQL (``DATABASE_URL``); every test uses its own schema, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from idem_durable import claim_from_processes, postgres_schema, postgres_store
from psycopg import sql

from stalwart import StoreUnavailable
from stalwart.idempotency import FP_VERSION, Outcome, RecordDecodeError, State, StoredResponse
from stalwart.idempotency.stores.postgres import PostgresStore

pytestmark = pytest.mark.integration

FP = b"\x01" * 32
RESPONSE = StoredResponse(Outcome.RESPONSE, 201, ((b"location", b"/p/1"),), bytes(range(256)) * 4)


def rid() -> str:
    return secrets.token_hex(32)


def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
async def store(request: pytest.FixtureRequest) -> AsyncIterator[PostgresStore]:
    s = postgres_store(request)
    yield s
    await s.aclose()


async def claim(s: PostgresStore, record_id: str, owner: str, **kw: Any) -> Any:
    args: dict[str, Any] = {"lease_ttl": 30.0, "retention": 3600.0, **kw}
    return await s.claim(record_id, fingerprint=FP, fp_version=FP_VERSION, owner_token=owner, **args)


async def execute(url: str, query: sql.Composable, params: Any = None) -> Any:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else cur.rowcount


def table(s: PostgresStore) -> sql.Identifier:
    return sql.Identifier(s.schema, s.table)


async def test_a_hundred_concurrent_claims_have_exactly_one_winner(request: pytest.FixtureRequest) -> None:
    url, schema = postgres_schema(request)
    stores = [PostgresStore.from_url(url, schema=schema, max_size=5) for _ in range(2)]
    try:
        r = rid()
        results = await asyncio.gather(*(claim(stores[i % 2], r, token()) for i in range(100)))
        winners = [x for x in results if x.claimed]
        assert len(winners) == 1
        assert {x.record.owner_token for x in results} == {winners[0].record.owner_token}
        assert {x.record.fence for x in results} == {winners[0].record.fence}
    finally:
        for s in stores:
            await s.aclose()


async def test_concurrent_reclaims_of_an_expired_lease_have_exactly_one_winner(store: PostgresStore) -> None:
    r, a = rid(), token()
    old = (await claim(store, r, a, lease_ttl=0.01)).record
    await asyncio.sleep(0.05)  # the lease lapses on the server's clock
    results = await asyncio.gather(*(claim(store, r, token(), reclaim=True) for _ in range(50)))
    winners = [x for x in results if x.claimed]
    assert len(winners) == 1
    new = winners[0].record
    assert (new.attempt, new.state) == (2, State.IN_PROGRESS)
    assert new.fence > old.fence
    assert all(x.record.fence == new.fence for x in results)


async def test_concurrent_strict_claims_abandon_once(store: PostgresStore) -> None:
    r, a = rid(), token()
    old = (await claim(store, r, a, lease_ttl=0.01)).record
    await asyncio.sleep(0.05)
    results = await asyncio.gather(*(claim(store, r, token()) for _ in range(30)))
    assert not any(x.claimed for x in results)
    assert {(x.record.state, x.record.owner_token, x.record.fence) for x in results} == {
        (State.ABANDONED, a, old.fence)
    }


async def test_fences_come_from_one_sequence_shared_by_every_process(request: pytest.FixtureRequest) -> None:
    url, schema = postgres_schema(request)
    stores = [PostgresStore.from_url(url, schema=schema) for _ in range(3)]
    try:
        fences = []
        for i in range(12):
            fences.append((await claim(stores[i % 3], rid(), token())).record.fence)
        assert fences == sorted(set(fences))
    finally:
        for s in stores:
            await s.aclose()


async def test_purge_never_touches_a_live_record(store: PostgresStore) -> None:
    live = [rid() for _ in range(20)]
    for r in live:  # long leases, tiny retention: live because expires_at = lease + retention
        await claim(store, r, token(), lease_ttl=3600.0, retention=0.001)
    expired = [rid() for _ in range(20)]
    for r in expired:
        a = token()
        rec = (await claim(store, r, a, lease_ttl=0.01, retention=0.01)).record
        await store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=0.01)
    await asyncio.sleep(0.05)

    async def churn() -> None:  # claims and heartbeats racing the purge
        for r in live:
            assert not (await claim(store, r, token())).claimed

    purged = await asyncio.gather(*(store.purge(limit=3) for _ in range(10)), churn())
    assert sum(x for x in purged if x is not None) == 20
    for r in live:
        rec = await store.get(r)
        assert rec is not None
        assert rec.state is State.IN_PROGRESS
    assert all([await store.get(r) is None for r in expired])
    assert await store.purge() == 0


async def test_purge_skips_rows_a_claim_has_locked(store: PostgresStore, database_url: str) -> None:
    r, a = rid(), token()
    rec = (await claim(store, r, a, lease_ttl=0.01, retention=0.01)).record
    await store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=0.01)
    await asyncio.sleep(0.05)
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        query = sql.SQL("SELECT 1 FROM {} WHERE record_id = %s FOR UPDATE").format(table(store))
        await holder.execute(query, (r,))  # a transaction holds the row, as the claim's phase 2 would
        assert await store.purge() == 0  # skipped, and not blocked (lock_timeout would turn a wait into 503)
        await holder.rollback()
    assert await store.purge() == 1


async def test_a_contended_row_answers_503_instead_of_hanging(request: pytest.FixtureRequest) -> None:
    url, schema = postgres_schema(request)
    s = PostgresStore.from_url(url, schema=schema, lock_timeout=0.1)
    try:
        r = rid()
        await claim(s, r, token(), lease_ttl=0.01)
        await asyncio.sleep(0.05)
        async with await psycopg.AsyncConnection.connect(url) as holder:
            await holder.execute(sql.SQL("SELECT 1 FROM {} WHERE record_id = %s FOR UPDATE").format(table(s)), (r,))
            with pytest.raises(StoreUnavailable) as info:
                await claim(s, r, token())  # the expired lease must be abandoned under the row lock
            assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)
            await holder.rollback()
        assert (await claim(s, r, token())).record.state is State.ABANDONED
    finally:
        await s.aclose()


async def test_a_row_deleted_during_the_claim_is_inserted_again(store: PostgresStore) -> None:
    r, a = rid(), token()
    old = (await claim(store, r, a, lease_ttl=0.01, retention=0.01)).record
    await asyncio.sleep(0.05)
    # Past its retention: the claim re-inserts over it, even when a purge deletes it in between.
    results = await asyncio.gather(claim(store, r, token()), store.purge(), claim(store, r, token()))
    claimed = [x for x in (results[0], results[2]) if x.claimed]
    assert len(claimed) == 1
    assert claimed[0].record.fence > old.fence
    assert claimed[0].record.attempt == 1


async def _claim_racing_an_uncommitted_insert(request: pytest.FixtureRequest, *, commit: bool) -> tuple[Any, int]:
    """Claim a key while another transaction holds an uncommitted insert of it; end that transaction once the
    claim waits for it. Returns the claim's result and how often the claim went to its locked phase 2."""
    url, schema = postgres_schema(request)
    s = PostgresStore.from_url(url, schema=schema, lock_timeout=None)  # the claim waits as long as the holder
    try:
        await s.now()  # the table exists
        phase2 = 0
        locked = s._claim_locked

        async def counting(params: dict[str, Any], reclaim: bool) -> Any:
            nonlocal phase2
            phase2 += 1
            return await locked(params, reclaim)

        s._claim_locked = counting  # type: ignore[method-assign]
        r = rid()
        insert = sql.SQL(
            "INSERT INTO {t} (record_id, state, fingerprint, fp_version, owner_token, fence, attempt, "
            "lease_expires_at, created_at, updated_at, expires_at, schema_version) "
            "VALUES (%s, 'in_progress', %s, %s, 'holder', nextval({seq}), 1, now() + interval '1 hour', now(), "
            "now(), now() + interval '2 hours', 1)"
        ).format(t=table(s), seq=sql.Literal(f"{schema}.{s.table}_fence"))
        async with (
            await psycopg.AsyncConnection.connect(url) as holder,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as observer,
        ):
            await holder.execute(insert, (r, FP, FP_VERSION))
            task = asyncio.create_task(claim(s, r, token()))
            blocked = b"SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
            for _ in range(2000):  # until the claim's insert waits for the holder's transaction (or 20 s)
                row = await (await observer.execute(blocked, (holder.info.backend_pid,))).fetchone()
                if row and row[0] == 1:
                    break
                assert not task.done(), task
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the claim never waited for the uncommitted insert")
            await (holder.commit() if commit else holder.rollback())
            result = await task
        return result, phase2
    finally:
        await s.aclose()


async def test_a_claim_racing_a_concurrent_insert_classifies_the_committed_row(request: pytest.FixtureRequest) -> None:
    # The claim's snapshot misses the row and its insert conflicts once the holder commits: no row comes back, and
    # the locked phase 2 must read and classify the holder's record (never a second owner, never a 503).
    result, phase2 = await _claim_racing_an_uncommitted_insert(request, commit=True)
    assert not result.claimed
    assert result.record.owner_token == "holder"
    assert result.record.state is State.IN_PROGRESS
    assert phase2 == 1


async def test_a_claim_racing_an_insert_that_rolls_back_takes_the_key(request: pytest.FixtureRequest) -> None:
    result, phase2 = await _claim_racing_an_uncommitted_insert(request, commit=False)
    assert result.claimed
    assert result.record.owner_token != "holder"
    assert result.record.attempt == 1
    assert phase2 == 0


async def test_a_replay_claim_draws_no_fence(store: PostgresStore, database_url: str) -> None:
    r, a = rid(), token()
    rec = (await claim(store, r, a)).record
    assert await store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=3600.0)
    seq = sql.Identifier(store.schema, f"{store.table}_fence")
    before = await execute(database_url, sql.SQL("SELECT last_value FROM {}").format(seq))
    for _ in range(3):
        replay = await claim(store, r, token())
        assert not replay.claimed
        assert replay.record.state is State.COMPLETED
        assert replay.record.body == RESPONSE.body
    assert await execute(database_url, sql.SQL("SELECT last_value FROM {}").format(seq)) == before
    fresh = (await claim(store, rid(), token())).record
    assert fresh.fence > rec.fence


async def test_the_schema_is_created_once_by_concurrent_processes(request: pytest.FixtureRequest) -> None:
    url, schema = postgres_schema(request)
    stores = [PostgresStore.from_url(url, schema=schema, table="custom_records") for _ in range(4)]
    try:
        results = await asyncio.gather(*(claim(s, rid(), token()) for s in stores))
        assert all(x.claimed for x in results)
        rows = await execute(
            url,
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "custom_records")),
        )
        assert rows == [(4,)]
        names = await execute(
            url,
            sql.SQL("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = %s"),
            (schema,),
        )
        assert {n for (n,) in names} >= {"custom_records", "custom_records_fence", "custom_records_expires_idx"}
    finally:
        for s in stores:
            await s.aclose()


async def test_without_create_schema_a_missing_table_is_store_unavailable(request: pytest.FixtureRequest) -> None:
    url, schema = postgres_schema(request)
    s = PostgresStore.from_url(url, schema=schema, create_schema=False)
    try:
        with pytest.raises(StoreUnavailable) as info:
            await claim(s, rid(), token())
        assert isinstance(info.value.__cause__, psycopg.errors.UndefinedTable)
    finally:
        await s.aclose()


async def test_schema_sql_lets_operators_create_the_table(request: pytest.FixtureRequest) -> None:
    url, schema = postgres_schema(request)
    s = PostgresStore.from_url(url, schema=schema, table="managed", create_schema=False)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(s.schema_sql().encode())
        assert (await claim(s, rid(), token())).claimed
    finally:
        await s.aclose()


async def test_an_undecodable_record_raises_record_decode_error(store: PostgresStore, database_url: str) -> None:
    r = rid()
    await claim(store, r, token())
    await execute(database_url, sql.SQL("UPDATE {} SET schema_version = 99").format(table(store)))
    with pytest.raises(RecordDecodeError):
        await store.get(r)
    with pytest.raises(RecordDecodeError):
        await claim(store, r, token())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_server_raises_store_unavailable() -> None:
    s = PostgresStore.from_url(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", connect_timeout=0.3)
    try:
        with pytest.raises(StoreUnavailable) as info:
            await claim(s, rid(), token())
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        for call in (s.get(rid()), s.now(), s.purge(), s.list_abandoned()):
            with pytest.raises(StoreUnavailable):
                await call
        with pytest.raises(StoreUnavailable):
            async with s.transaction(rid(), fingerprint=FP, fp_version=FP_VERSION):
                pass
    finally:
        await s.aclose()


@pytest.mark.parametrize(("schema", "table_name"), [("", "t"), ("s", ""), ("s", "x" * 49), ("s\x00", "t")])
def test_invalid_names_are_refused(schema: str, table_name: str) -> None:
    with pytest.raises(ValueError, match=r"schema|table"):
        PostgresStore.from_url("postgresql://localhost/x", schema=schema, table=table_name)


async def test_store_times_are_the_servers(store: PostgresStore, database_url: str) -> None:
    rows = await execute(database_url, sql.SQL("SELECT extract(epoch FROM now())"))
    server_now = float(rows[0][0])
    result = await claim(store, rid(), token(), lease_ttl=30.0)
    # Both read the same server clock a few milliseconds apart; the client's clock is never consulted.
    assert abs(result.now - server_now) < 60
    assert result.record.lease_expires_at == pytest.approx(result.now + 30.0, abs=1e-3)


@pytest.mark.slow
async def test_claims_from_several_processes_have_one_winner_per_record(
    store: PostgresStore, database_url: str
) -> None:
    await store.now()  # creates the schema before the workers start
    wins = await claim_from_processes("postgres", database_url, store.schema, processes=4, records=25)
    assert sorted(record for record, _, _ in wins) == list(range(25))  # exactly one winner per record
    fences = [fence for _, _, fence in wins]
    assert len(set(fences)) == len(fences)
