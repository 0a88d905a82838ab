"""Regression: durations that the idempotency stores hand to a server, a Lua script or SQLite as whole units were not
range-checked, so a legal-looking value raised ``OverflowError``, failed every request, or silently meant the
opposite of what was asked.

What was wrong:

* ``SQLiteStore(busy_timeout=...)`` past 2**31 - 1 ms (about 24.8 days) was read by SQLite as 0: the store stopped
  waiting for a concurrent writer at all. A timeout under a millisecond was truncated to 0 the same way, and
  ``1e308`` raised a bare ``OverflowError``.
* ``PostgresStore.from_url(lock_timeout=..., statement_timeout=...)`` and ``transaction(statement_timeout=...,
  lock_timeout=..., idle_timeout=...)`` were not validated: ``0`` became 1 ms (every claim's statement cancelled, so
  every request a 503), past 2**31 - 1 ms PostgreSQL refused every connection (every request a 503 after
  ``connect_timeout``), NaN and strings raised errors that named no parameter.
* ``RedisStore(wait_timeout=1e308)`` and ``RedisStore(index_grace=1e308)`` raised ``OverflowError``; a
  ``wait_timeout`` past what ``WAIT`` takes was accepted and then failed every claim.
* ``IdempotencyConfig(retention=..., lease_ttl=...)`` had no upper bound. With ``retention=1e12`` (31,700 years) a
  PostgreSQL claim was committed and then could not be read back ("timestamp too large (after year 10K)"), and the
  Redis script wrote ``expires_at`` as ``1.0017959955200503e+18``, which the store could not decode: the key answered
  503 until someone deleted it by hand.

Each such duration now goes through one helper (``stalwart._config.to_units``: rounded up, at most the reader's
maximum) or a bound (``retention`` and ``lease_ttl`` at most 100 years, which every store can hold), and a value out
of range is a ``ValueError`` naming the parameter when it is given. Peer reports of the same shape: php-src GH-17746
(PR #17854, "Signed integer overflow when setting ATTR_TIMEOUT" for ``sqlite3_busy_timeout``) and rusqlite PR #604
("Fix i32 overflow in Connection::busy_timeout").
"""

from __future__ import annotations

import math
import socket
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio

from stalwart.idempotency import FP_VERSION, IdempotencyConfig, MemoryStore, idempotent
from stalwart.idempotency.stores.postgres import PostgresStore
from stalwart.idempotency.stores.redis import RedisStore
from stalwart.idempotency.stores.sqlite import SQLiteStore

LONGEST_RECORD = 100 * 365 * 86_400.0  # retention and lease_ttl: at most 100 years
PAST_INT32_MS = 2_147_483.648  # one millisecond more than SQLite's and PostgreSQL's settings hold


async def claim(store: Any, *, lease_ttl: float = 30.0, retention: float = 60.0) -> Any:
    return await store.claim(
        f"record-{uuid.uuid4().hex}",
        fingerprint=b"f" * 32,
        fp_version=FP_VERSION,
        owner_token="owner",
        lease_ttl=lease_ttl,
        retention=retention,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- SQLite -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [PAST_INT32_MS, 1e308])
def test_a_sqlite_busy_timeout_sqlite_cannot_hold_is_refused(tmp_path: Path, seconds: float) -> None:
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStore(tmp_path / "idem.sqlite3", busy_timeout=seconds)


@pytest.mark.parametrize(
    ("seconds", "milliseconds"),
    [(2_147_483.647, 2_147_483_647), (0.0004, 1), (5.0, 5000), (0, 0)],
)
async def test_sqlite_waits_as_long_as_asked(tmp_path: Path, seconds: float, milliseconds: int) -> None:
    # The longest accepted wait is SQLite's own maximum, not a wrapped 0; a sub-millisecond wait is not truncated
    # to 0 (no waiting); 0 still means no waiting.
    store = SQLiteStore(tmp_path / "idem.sqlite3", busy_timeout=seconds)
    try:
        await claim(store)  # opens the connection
        assert await store._run(lambda conn: conn.execute("PRAGMA busy_timeout").fetchone()[0]) == milliseconds
    finally:
        await store.aclose()


# -- PostgreSQL -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("parameter", ["lock_timeout", "statement_timeout"])
@pytest.mark.parametrize(
    ("seconds", "error"),
    [(0, ValueError), (-1.0, ValueError), (math.nan, ValueError), (PAST_INT32_MS, ValueError), ("2", TypeError)],
)
def test_postgres_connection_timeouts_out_of_range_are_refused(
    parameter: str, seconds: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=parameter):
        PostgresStore.from_url(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", **{parameter: seconds})


@pytest.mark.parametrize("parameter", ["statement_timeout", "lock_timeout", "idle_timeout"])
async def test_postgres_transaction_timeouts_are_checked_before_connecting(parameter: str) -> None:
    # Nothing listens on the port: a check made after taking a connection would end in StoreUnavailable instead.
    store = PostgresStore.from_url(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", connect_timeout=0.5)
    try:
        with pytest.raises(ValueError, match=parameter):
            async with store.transaction("record", fingerprint=b"f", fp_version=FP_VERSION, **{parameter: 0}):
                pass  # pragma: no cover - never entered
    finally:
        await store.aclose()


async def test_postgres_takes_the_longest_and_shortest_timeouts_accepted(database_url: str, unique_prefix: str) -> None:
    schema = unique_prefix.replace("-", "_")
    store = PostgresStore.from_url(database_url, schema=schema, statement_timeout=2_147_483.647, lock_timeout=0.0004)
    try:
        assert (await claim(store)).claimed  # the server took both settings on connecting
    finally:
        await store.aclose()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


def test_postgres_from_url_sends_only_the_timeouts_it_is_given() -> None:
    # None is documented to keep the server's setting (postgresql.conf, ALTER ROLE/DATABASE ... SET); it used to
    # send "-c lock_timeout=0 -c statement_timeout=0" (no limit), overriding such a default.
    store = PostgresStore.from_url("postgresql://127.0.0.1:1/none", lock_timeout=None, statement_timeout=None)
    assert "options" not in store.pool.kwargs
    store = PostgresStore.from_url("postgresql://127.0.0.1:1/none", lock_timeout=1.5, statement_timeout=None)
    assert store.pool.kwargs["options"] == "-c lock_timeout=1500"


# -- Redis ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "seconds"),
    [("wait_timeout", 1e308), ("wait_timeout", 9.1e12), ("index_grace", 1e308), ("index_grace", 9.1e9)],
)
def test_redis_durations_its_scripts_and_wait_cannot_hold_are_refused(parameter: str, seconds: float) -> None:
    with pytest.raises(ValueError, match=parameter):
        RedisStore(redis.asyncio.Redis(), **{parameter: seconds})


async def test_redis_from_url_without_a_socket_timeout_accepts_wait() -> None:
    # socket_timeout=None (no per-command limit) with WAIT on: compared with None, it raised TypeError.
    store = RedisStore.from_url("redis://127.0.0.1:1/0", socket_timeout=None, wait_replicas=1, wait_timeout=0.5)
    await store.aclose()


@pytest.mark.parametrize("socket_timeout", [-1.0, 0.0, math.nan])
def test_redis_from_url_refuses_a_bad_socket_timeout(socket_timeout: float) -> None:
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisStore.from_url("redis://127.0.0.1:1/0", socket_timeout=socket_timeout)


# -- retention and lease_ttl ------------------------------------------------------------------------------------


@pytest.mark.parametrize("parameter", ["retention", "lease_ttl"])
def test_a_record_duration_no_store_can_hold_is_refused(parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        IdempotencyConfig(**{parameter: 1e12})
    with pytest.raises(ValueError, match=parameter):
        idempotent(**{parameter: LONGEST_RECORD * 2})
    IdempotencyConfig(**{parameter: LONGEST_RECORD})


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis", "postgres"])
async def test_every_store_holds_a_record_of_the_longest_lease_and_retention(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store: Any
    cleanup = None
    if kind == "memory":
        store = MemoryStore()
    elif kind == "sqlite":
        store = SQLiteStore(tmp_path / "idem.sqlite3")
    elif kind == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("unique_prefix")
        store = RedisStore.from_url(url, prefix=prefix, check_server_on_first_use=False)

        async def cleanup() -> None:
            keys = await store.client.keys(f"{{{prefix}}}:*")
            if keys:
                await store.client.delete(*keys)

    else:
        url = request.getfixturevalue("database_url")
        schema = request.getfixturevalue("unique_prefix").replace("-", "_")
        store = PostgresStore.from_url(url, schema=schema)

        async def cleanup() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())

    try:
        now = await store.now()
        result = await claim(store, lease_ttl=LONGEST_RECORD, retention=LONGEST_RECORD)
        assert result.claimed
        record = await store.get(result.record.record_id)  # read back and decoded
        assert record is not None
        assert record.expires_at == pytest.approx(now + 2 * LONGEST_RECORD, abs=60.0)
    finally:
        if cleanup is not None:
            await cleanup()
        await store.aclose()
