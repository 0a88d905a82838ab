"""Regression: transactional mode ran with no database timeouts, so a contended row or a stuck server hung the
request instead of answering 503 (spec §2.16.4: "set lock_timeout and statement_timeout so a contended row gives
503, not a hang"; §2.14: the store cannot decide → 503 with ``Retry-After``).

- ``PostgresStore.transaction()`` could set ``statement_timeout`` / ``lock_timeout`` for the handler, but the
  middleware passed none, so they were "no limit" (``SET LOCAL`` to 0 overrides even ``from_url``'s 5 s / 2 s), and
  there was no setting to change that. Now ``IdempotencyConfig`` has ``transaction_statement_timeout`` (30 s),
  ``transaction_lock_timeout`` (2 s) and ``transaction_idle_timeout`` (60 s), validated (ValueError naming the
  field) and passed into the transaction.
- The store's own insert of the completed record (and the COMMIT) ran under the same "no limit": a record row
  locked elsewhere (a purge, a standard-mode claim, a concurrent insert of the key) made the insert wait forever.
  It now runs with the route's ``store_timeout`` and a contended row is a 503, everything rolled back.
- A handler that lets such a timeout out (SQLSTATE 57014, 55P03, 25P03) is rolled back and its client gets 503
  with ``Retry-After`` (nothing applied, retry), the exception then re-raised for error reporting.

Peer reports of the same kind: hanging on a lock held by another session while waiting for an idempotency row,
e.g. django-idempotency-key and Brandur's ``IDEMPOTENCY_KEY_LOCK_TIMEOUT`` in rocket-rides-atomic (spec [S18]).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator, MutableMapping
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stalwart import StoreUnavailable
from stalwart.idempotency import (
    FP_VERSION,
    IdempotencyConfig,
    IdempotencyMiddleware,
    Identity,
    Outcome,
    State,
    StoredResponse,
)
from stalwart.idempotency.stores.postgres import PostgresStore

SECRET = b"t" * 32
HANG_BOUND = 15.0  # a request that has not answered by then hangs (the defect); every limit here is far below it


def resolver(scope: MutableMapping[str, Any]) -> Identity | None:
    return Identity("alice", "t1")


class Env:
    def __init__(self, url: str, schema: str) -> None:
        self.url, self.schema = url, schema
        self.charges = sql.Identifier(schema, "charges")
        self.table = sql.Identifier(schema, "stalwart_idempotency")

    def count(self) -> int:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.charges)).fetchone()
            assert row is not None
            return int(row[0])

    def records(self) -> list[tuple[str, int | None]]:
        with psycopg.connect(self.url) as conn:
            q = sql.SQL("SELECT state, status FROM {} ORDER BY created_at").format(self.table)
            return [(r[0], r[1]) for r in conn.execute(q).fetchall()]


@pytest.fixture
async def env(database_url: str, unique_prefix: str) -> AsyncIterator[Env]:
    schema = unique_prefix.replace("-", "_")
    e = Env(database_url, schema)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, amount int)").format(e.charges))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (0, 0)").format(e.charges))  # the row a test may lock
    yield e
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def app_for(env: Env, store: PostgresStore, behaviour: dict[str, Any], **config: Any) -> IdempotencyMiddleware:
    async def pay(request: Request) -> Response:
        conn = request.state.idempotency.connection
        await conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, 100)").format(env.charges), (secrets.randbelow(10**9),))
        if behaviour.get("show"):
            names = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
            behaviour["seen"] = [(await (await conn.execute(f"SHOW {n}")).fetchone())[0] for n in names]
        if behaviour.get("sleep"):
            await conn.execute("SELECT pg_sleep(%s)", (behaviour["sleep"],))
        if behaviour.get("lock_row"):
            await conn.execute(sql.SQL("UPDATE {} SET amount = amount + 1 WHERE id = 0").format(env.charges))
        return JSONResponse({"paid": True}, status_code=201)

    app = Starlette(routes=[Route("/pay", pay, methods=["POST"])])
    cfg = IdempotencyConfig(transactional=True, **config)
    return IdempotencyMiddleware(app, store=store, resolver=resolver, secret=SECRET, config=cfg)


async def post(mw: IdempotencyMiddleware, key: str = "k-1") -> httpx.Response:
    transport = httpx.ASGITransport(app=mw, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        async with asyncio.timeout(HANG_BOUND):
            return await client.post("/pay", json={"a": 1}, headers={"idempotency-key": key})


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("idempotency-store-unavailable")
    assert int(response.headers["retry-after"]) >= 1


async def test_the_configured_limits_reach_the_handlers_transaction(env: Env) -> None:
    store = PostgresStore.from_url(env.url, schema=env.schema)
    try:
        behaviour: dict[str, Any] = {"show": True}
        assert (await post(app_for(env, store, behaviour))).status_code == 201
        assert behaviour["seen"] == ["30s", "2s", "1min"]  # the defaults; "0" ("no limit") before the fix
        behaviour = {"show": True}
        mw = app_for(
            env,
            store,
            behaviour,
            transaction_statement_timeout=1.5,
            transaction_lock_timeout=timedelta(milliseconds=250),
            transaction_idle_timeout=None,
        )
        assert (await post(mw, "k-2")).status_code == 201
        assert behaviour["seen"] == ["1500ms", "250ms", "0"]
    finally:
        await store.aclose()


async def test_a_statement_timeout_in_the_handler_is_503_and_rolls_back(env: Env) -> None:
    store = PostgresStore.from_url(env.url, schema=env.schema)
    try:
        mw = app_for(env, store, {"sleep": 30}, transaction_statement_timeout=0.2)
        assert_503(await post(mw))
        assert env.count() == 1  # only the fixture's row: the handler's insert was rolled back
        assert env.records() == []  # nothing stored: the key is new
        assert (await post(app_for(env, store, {}))).status_code == 201  # the retry runs and commits
        assert env.count() == 2
        assert env.records() == [("completed", 201)]
    finally:
        await store.aclose()


async def test_a_lock_wait_in_the_handler_is_503_and_rolls_back(env: Env) -> None:
    store = PostgresStore.from_url(env.url, schema=env.schema)
    holder = await psycopg.AsyncConnection.connect(env.url)
    try:
        await holder.execute(sql.SQL("SELECT 1 FROM {} WHERE id = 0 FOR UPDATE").format(env.charges))
        assert_503(await post(app_for(env, store, {"lock_row": True}, transaction_lock_timeout=0.2)))
        assert env.count() == 1
        assert env.records() == []
    finally:
        await holder.close()
        await store.aclose()


async def test_a_contended_record_row_fails_the_commit_insert_with_503(env: Env) -> None:
    """The store's own insert waits for a record row locked elsewhere: bounded by ``store_timeout``."""
    store = PostgresStore.from_url(env.url, schema=env.schema)
    holder = await psycopg.AsyncConnection.connect(env.url)
    try:
        mw = app_for(env, store, {}, store_timeout=0.3)
        assert (await post(mw, "k-old")).status_code == 201
        # Make every record expired (so the transaction finds none and its insert replaces the row), then hold the
        # row lock as a purge or a standard-mode claim would.
        async with await psycopg.AsyncConnection.connect(env.url, autocommit=True) as conn:
            await conn.execute(sql.SQL("UPDATE {} SET expires_at = now() - interval '1 s'").format(env.table))
        await holder.execute(sql.SQL("SELECT 1 FROM {} FOR UPDATE").format(env.table))
        assert_503(await post(mw, "k-old"))
        assert env.count() == 2  # the first request's charge only: the second's was rolled back
        await holder.rollback()
        assert (await post(mw, "k-old")).status_code == 201  # once the lock is gone the retry commits
        assert env.count() == 3
    finally:
        await holder.close()
        await store.aclose()


async def test_the_store_timeout_bounds_the_insert_at_the_store_level(env: Env) -> None:
    store = PostgresStore.from_url(env.url, schema=env.schema)
    holder = await psycopg.AsyncConnection.connect(env.url)
    response = StoredResponse(Outcome.RESPONSE, 201, (), b"{}")
    record_id = secrets.token_hex(32)
    try:
        await store.claim(record_id, fingerprint=b"f", fp_version=1, owner_token="o", lease_ttl=0.001, retention=0.001)
        async with await psycopg.AsyncConnection.connect(env.url, autocommit=True) as conn:
            await conn.execute(sql.SQL("UPDATE {} SET expires_at = now() - interval '1 s'").format(env.table))
        await holder.execute(sql.SQL("SELECT 1 FROM {} FOR UPDATE").format(env.table))
        async with asyncio.timeout(HANG_BOUND):
            async with store.transaction(
                record_id, fingerprint=b"f", fp_version=FP_VERSION, lock_timeout=None, store_timeout=0.2
            ) as t:
                assert t.existing is None
                with pytest.raises(StoreUnavailable, match=r"due to (statement|lock) timeout"):
                    await t.complete(response, retention=60.0)
        await holder.rollback()
        record = await store.get(record_id)
        assert record is None or record.state is State.IN_PROGRESS  # the expired claim, never the new record
    finally:
        await holder.close()
        await store.aclose()


FIELDS = ("transaction_statement_timeout", "transaction_lock_timeout", "transaction_idle_timeout")


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, 2**31 / 1000])
def test_bad_limits_are_refused_naming_the_field(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        IdempotencyConfig(**{name: value})


@pytest.mark.parametrize("name", FIELDS)
def test_limits_take_seconds_timedelta_or_none(name: str) -> None:
    assert getattr(IdempotencyConfig(**{name: timedelta(seconds=3)}), name) == 3.0
    assert getattr(IdempotencyConfig(**{name: None}), name) is None
    with pytest.raises(TypeError, match=name):
        IdempotencyConfig(**{name: "5s"})


def test_a_transactional_store_timeout_must_fit_postgresql() -> None:
    with pytest.raises(ValueError, match="store_timeout"):
        IdempotencyConfig(transactional=True, store_timeout=2**31 / 1000)
    assert IdempotencyConfig(store_timeout=2**31 / 1000).store_timeout == 2**31 / 1000  # other modes: no cap
