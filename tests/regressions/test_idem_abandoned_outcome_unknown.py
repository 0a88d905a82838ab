"""Regression: an abandoned record never said "outcome unknown", and the ``abandoned`` metric counted replays.

1. Spec §2.6: ``outcome`` is ``response | exception | unknown``; ``unknown`` belongs to ABANDONED records (the
   execution stopped without recording its outcome). No store wrote it: both abandon paths — the owner's shielded
   abandon on shutdown (T5) and a claim finding a lapsed lease in strict mode (T6) — left ``outcome=None``, so
   ``list_abandoned()`` (the reconciliation API) and ``get()`` returned records indistinguishable by outcome from
   in-progress ones, and ``Outcome.UNKNOWN`` was unused. Every store (memory, SQLite, Redis Lua, PostgreSQL) now
   writes it on every abandon path, and clears it again on a reclaim (an in-progress record has no outcome); a
   late completion replaces it with the real one.
2. Spec §2.17 names the ``abandoned`` metric among the counters of events; it was incremented for each *replay* of
   an abandoned record, so one crash counted once per retry of the client. It now counts abandonments: a claim that
   turns a lapsed lease into ABANDONED (the store writes the abandonment at the instant it answers with, which is
   what tells it from a later read), and a shielded abandon on cancellation. The replay answer is unchanged.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from _idem_asgi import SECRET, post
from psycopg import sql

from stalwart.idempotency import (
    FP_VERSION,
    IdempotencyConfig,
    IdempotencyMiddleware,
    IdempotencyStore,
    Identity,
    Outcome,
    State,
    StoredResponse,
)
from stalwart.idempotency.stores import MemoryStore, SQLiteStore
from stalwart.idempotency.stores.postgres import PostgresStore
from stalwart.idempotency.stores.redis import RedisStore

FP = b"\x01" * 32
RESPONSE = StoredResponse(Outcome.RESPONSE, 201, ((b"location", b"/p/1"),), b"done")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Stores:
    def __init__(self, store: IdempotencyStore, clock: ManualClock | None) -> None:
        self.store = store
        self.clock = clock
        self.lease = 10.0 if clock is not None else 0.05

    async def lapse(self, record_id: str) -> None:
        if self.clock is not None:
            self.clock.now += self.lease * 2
            return
        for _ in range(200):  # a state to reach on the server's clock, not a timing assertion
            record = await self.store.get(record_id)
            assert record is not None
            if record.lease_expires_at < await self.store.now():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the lease never lapsed")

    async def claim(self, record_id: str, *, reclaim: bool = False, lease: float | None = None) -> Any:
        return await self.store.claim(
            record_id,
            fingerprint=FP,
            fp_version=FP_VERSION,
            owner_token=secrets.token_hex(16),
            lease_ttl=self.lease if lease is None else lease,
            retention=3600.0,
            reclaim=reclaim,
        )


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("postgres", marks=pytest.mark.integration),
    ]
)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    clock = ManualClock()
    store: IdempotencyStore
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if request.param == "memory":
        store = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "idem.sqlite3", clock=clock)
    elif request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("unique_prefix")
        store = RedisStore.from_url(url, prefix=prefix)
        cleanup = partial(_drop_redis, url, prefix)
    else:
        url, schema = (
            request.getfixturevalue("database_url"),
            request.getfixturevalue("unique_prefix").replace("-", "_"),
        )
        store = PostgresStore.from_url(url, schema=schema)
        cleanup = partial(_drop_schema, url, schema)
    try:
        yield Stores(store, clock if request.param in ("memory", "sqlite") else None)
    finally:
        await store.aclose()
        cleanup()


def _drop_redis(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{{{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def test_owner_abandon_writes_outcome_unknown(stores: Stores) -> None:
    r = secrets.token_hex(32)
    mine = (await stores.claim(r, lease=3600.0)).record
    assert mine.outcome is None
    assert await stores.store.abandon(r, owner_token=mine.owner_token, fence=mine.fence)
    record = await stores.store.get(r)
    assert record is not None
    assert (record.state, record.outcome) == (State.ABANDONED, Outcome.UNKNOWN)
    (listed,) = await stores.store.list_abandoned()
    assert (listed.record_id, listed.outcome) == (r, Outcome.UNKNOWN)
    # A late completion by the same owner stores the real outcome.
    done = RESPONSE
    assert await stores.store.complete(r, owner_token=mine.owner_token, fence=mine.fence, response=done, retention=60)
    record = await stores.store.get(r)
    assert record is not None
    assert (record.state, record.outcome, record.status) == (State.COMPLETED, Outcome.RESPONSE, 201)


async def test_a_claim_abandoning_a_lapsed_lease_writes_outcome_unknown(stores: Stores) -> None:
    r = secrets.token_hex(32)
    await stores.claim(r)
    await stores.lapse(r)
    seen = await stores.claim(r)
    assert not seen.claimed
    assert (seen.record.state, seen.record.outcome) == (State.ABANDONED, Outcome.UNKNOWN)
    assert seen.record.updated_at == seen.now  # the abandonment is written at the instant the claim answers with
    stored = await stores.store.get(r)
    assert stored is not None
    assert stored.outcome is Outcome.UNKNOWN
    if stores.clock is not None:
        stores.clock.now += 1.0
    again = await stores.claim(r)  # a later claim only reads it
    assert (again.record.state, again.record.outcome) == (State.ABANDONED, Outcome.UNKNOWN)
    assert again.record.updated_at == seen.record.updated_at != again.now


async def test_a_reclaim_clears_the_unknown_outcome(stores: Stores) -> None:
    r = secrets.token_hex(32)
    first = (await stores.claim(r, lease=3600.0)).record
    assert await stores.store.abandon(r, owner_token=first.owner_token, fence=first.fence)
    taken = await stores.claim(r, reclaim=True)
    assert taken.claimed
    assert (taken.record.state, taken.record.outcome) == (State.IN_PROGRESS, None)
    stored = await stores.store.get(r)
    assert stored is not None
    assert stored.outcome is None


# -- the metric ------------------------------------------------------------------------------------------------------


async def call(mw: Any) -> tuple[int | None, dict[bytes, bytes], bytes]:
    answer = await post(mw)
    return answer.status, answer.headers, answer.body


def hanging_app() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.Event().wait()

    return app


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_abandoned_counts_each_abandonment_once_not_each_replay(kind: str, tmp_path: Path) -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock) if kind == "memory" else SQLiteStore(tmp_path / "i.sqlite3", clock=clock)
    mw = IdempotencyMiddleware(
        hanging_app(), store=store, resolver=lambda s: Identity("alice"), secret=SECRET, config=IdempotencyConfig()
    )
    try:
        first = asyncio.create_task(call(mw))
        for _ in range(50):
            await asyncio.sleep(0.01)
            if mw.statistics()["claims"]:
                break
        clock.now += 60.0  # the lease (30 s) lapsed: the next request abandons the record
        answers = []
        for _ in range(3):
            answers.append(await call(mw))
            clock.now += 1.0
        for status, headers, body in answers:
            assert status == 500
            assert headers[b"idempotent-replayed"] == b"true"
            assert b"idempotency-outcome-unknown" in body
        assert mw.statistics()["abandoned"] == 1
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert mw.statistics()["abandoned"] == 1  # its shielded abandon finds the record no longer in progress
    finally:
        await store.aclose()


async def test_a_shielded_abandon_on_cancellation_is_counted() -> None:
    store = MemoryStore()
    mw = IdempotencyMiddleware(hanging_app(), store=store, resolver=lambda s: Identity("alice"), secret=SECRET)
    first = asyncio.create_task(call(mw))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if mw.statistics()["claims"]:
            break
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    (record,) = await store.list_abandoned()
    assert record.outcome is Outcome.UNKNOWN
    assert mw.statistics()["abandoned"] == 1
    for _ in range(2):
        status, headers, _ = await call(mw)
        assert (status, headers[b"idempotent-replayed"]) == (500, b"true")
    assert mw.statistics()["abandoned"] == 1
