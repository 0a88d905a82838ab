"""Transactional mode through the middleware against real PostgreSQL (spec §2.16.4, G5)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from idem_apps import Probe, client, headers, make_app, wrap
from idem_durable import postgres_schema
from psycopg import sql
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stalwart.idempotency import IdempotencyConfig, MemoryStore
from stalwart.idempotency.stores.postgres import PostgresStore

pytestmark = pytest.mark.integration

TX = IdempotencyConfig(transactional=True)


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> tuple[str, str]:
    url, schema = postgres_schema(request)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {}.charges (id serial PRIMARY KEY, amount int)").format(sql.Identifier(schema))
        )
    return url, schema


def charges(url: str, schema: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}.charges").format(sql.Identifier(schema))).fetchone()
        assert row is not None
        return int(row[0])


def charging_handler(schema: str, status: int = 201, fail: bool = False) -> Any:
    async def handler(request: Request) -> Response:
        conn = request.state.idempotency.connection
        assert conn is not None
        await conn.execute(sql.SQL("INSERT INTO {}.charges (amount) VALUES (100)").format(sql.Identifier(schema)))
        if fail:
            raise RuntimeError("crash after the write")
        return JSONResponse({"charged": True}, status_code=status)

    return handler


async def test_business_write_and_record_commit_together(pg: tuple[str, str]) -> None:
    url, schema = pg
    store = PostgresStore.from_url(url, schema=schema)
    probe = Probe()
    try:
        mw = wrap(make_app(probe, charging_handler(schema)), store, config=TX)
        async with client(mw) as c:
            first = await c.post("/payments", json={"a": 1}, headers=headers())
            again = await c.post("/payments", json={"a": 1}, headers=headers())
            other = await c.post("/payments", json={"a": 2}, headers=headers())
    finally:
        await store.aclose()
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert probe.calls == 1
    assert charges(url, schema) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_5xx_and_release_statuses_roll_back_and_are_retryable(pg: tuple[str, str], status: int) -> None:
    url, schema = pg
    store = PostgresStore.from_url(url, schema=schema)
    probe = Probe()
    try:
        mw = wrap(make_app(probe, charging_handler(schema, status=status)), store, config=TX)
        async with client(mw) as c:
            for _ in range(2):
                r = await c.post("/payments", json={"a": 1}, headers=headers())
                assert r.status_code == status
                assert "idempotent-replayed" not in r.headers
    finally:
        await store.aclose()
    assert probe.calls == 2
    assert charges(url, schema) == 0  # nothing happened


async def test_an_exception_rolls_back_and_propagates(pg: tuple[str, str]) -> None:
    url, schema = pg
    store = PostgresStore.from_url(url, schema=schema)
    probe = Probe()
    try:
        mw = wrap(make_app(probe, charging_handler(schema, fail=True)), store, config=TX)
        async with client(mw) as c:
            with pytest.raises(RuntimeError, match="crash after the write"):
                await c.post("/payments", json={"a": 1}, headers=headers())
        async with client(wrap(make_app(probe, charging_handler(schema)), store, config=TX)) as c:
            retry = await c.post("/payments", json={"a": 1}, headers=headers())
    finally:
        await store.aclose()
    assert retry.status_code == 201
    assert probe.calls == 2
    assert charges(url, schema) == 1


async def test_a_concurrent_duplicate_gets_409_at_once(pg: tuple[str, str]) -> None:
    url, schema = pg
    store = PostgresStore.from_url(url, schema=schema)
    probe = Probe()
    probe.hold()
    try:
        mw = wrap(make_app(probe, charging_handler(schema)), store, config=TX)
        async with client(mw) as c:
            original = asyncio.create_task(c.post("/payments", json={"a": 1}, headers=headers()))
            await probe.started.wait()
            dup = await c.post("/payments", json={"a": 1}, headers=headers())
            probe.release()
            first = await original
    finally:
        await store.aclose()
    assert dup.status_code == 409
    assert dup.headers["retry-after"] == "1"
    assert first.status_code == 201
    assert charges(url, schema) == 1


async def test_an_aborted_transaction_is_a_503_and_nothing_is_stored(pg: tuple[str, str]) -> None:
    url, schema = pg
    store = PostgresStore.from_url(url, schema=schema)

    runs: list[int] = []

    async def breaks_the_transaction(request: Request) -> Response:
        runs.append(1)
        conn = request.state.idempotency.connection
        try:
            await conn.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero:
            pass
        return JSONResponse({"charged": True}, status_code=201)

    try:
        async with client(wrap(make_app(Probe(), breaks_the_transaction), store, config=TX)) as c:
            for _ in range(2):
                r = await c.post("/payments", json={"a": 1}, headers=headers())
                assert r.status_code == 503
    finally:
        await store.aclose()
    assert len(runs) == 2  # nothing was stored: the retry ran again


def test_transactional_needs_a_transactional_store() -> None:
    with pytest.raises(ValueError, match="transaction"):
        wrap(make_app(Probe()), MemoryStore(), config=TX)
