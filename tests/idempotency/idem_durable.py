"""RedisStore and PostgresStore on the real servers for tests: a unique key prefix / schema, removed afterwards.

Used by the shared harness (``idem_harness.make_harness``, kinds ``redis`` and ``postgres``) and by the
store-specific tests. The clean-up is a synchronous finalizer, so it runs after the async fixtures closed the store.
``claim_from_processes`` races claims from several OS processes. ``wait_for_lapsed_lease`` and ``wait_for_log``
poll for a state (never a fixed wait).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from stalwart.idempotency.stores.postgres import PostgresStore
from stalwart.idempotency.stores.redis import RedisStore


def drop_redis_keys(url: str, prefix: str) -> int:
    """Delete every key of the stores using ``prefix`` (any shard); return how many were deleted."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{{{prefix}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def redis_store(request: pytest.FixtureRequest, **kwargs: Any) -> RedisStore:
    """A ``RedisStore.from_url`` on ``redis_url`` with the test's ``unique_prefix``; keys deleted after the test."""
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("unique_prefix")
    request.addfinalizer(lambda: drop_redis_keys(url, prefix))
    return RedisStore.from_url(url, prefix=prefix, **kwargs)


def postgres_schema(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(database_url, schema)``: a schema unique to the test, dropped after it."""
    url = request.getfixturevalue("database_url")
    schema = request.getfixturevalue("unique_prefix").replace("-", "_")
    request.addfinalizer(lambda: drop_schema(url, schema))
    return url, schema


async def wait_for_lapsed_lease(store: Any, record_id: str) -> Any:
    """Poll until the store's clock passes the record's lease; return the record (it must exist)."""
    for _ in range(200):  # up to about 4 s: a state to reach, not a timing assertion
        record = await store.get(record_id)
        assert record is not None
        if record.lease_expires_at < await store.now():
            return record
        await asyncio.sleep(0.02)
    raise AssertionError("the lease never lapsed")


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Poll until ``text`` appears in the captured log."""
    for _ in range(500):  # up to about 5 s: a state to reach, not a timing assertion
        if text in caplog.text:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never logged: {text!r}")


def postgres_store(request: pytest.FixtureRequest, **kwargs: Any) -> PostgresStore:
    """A ``PostgresStore.from_url`` on ``database_url`` in a schema unique to the test; dropped after the test."""
    url, schema = postgres_schema(request)
    return PostgresStore.from_url(url, schema=schema, **kwargs)


_WORKER = r"""
import asyncio, json, sys

async def main(kind, url, namespace, records, worker):
    if kind == "redis":
        from stalwart.idempotency.stores.redis import RedisStore
        store = RedisStore.from_url(url, prefix=namespace, check_server_on_first_use=False)
    else:
        from stalwart.idempotency.stores.postgres import PostgresStore
        store = PostgresStore.from_url(url, schema=namespace, max_size=4, connect_timeout=30.0)
    await store.now()  # connected (and the schema found) before the start signal
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    wins = []

    async def claim(record, attempt):
        owner = f"w{worker}-{attempt}"
        result = await store.claim(
            f"record-{record}", fingerprint=b"f", fp_version=1, owner_token=owner, lease_ttl=60.0, retention=60.0
        )
        if result.claimed:
            wins.append([record, owner, result.record.fence])

    await asyncio.gather(*(claim(r, a) for r in range(records) for a in range(3)))
    await store.aclose()
    print(json.dumps(wins), flush=True)

kind, url, namespace, records, worker = sys.argv[1:]
asyncio.run(main(kind, url, namespace, int(records), int(worker)))
"""


async def claim_from_processes(kind: str, url: str, namespace: str, *, processes: int, records: int) -> list[Any]:
    """Start ``processes`` Python processes that claim the same ``records`` at once; return every claim they won.

    Each process connects, reports ready, and waits for the start signal, which goes to all of them together.
    """
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            kind,
            url,
            namespace,
            str(records),
            str(i),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        wins: list[Any] = []
        for proc in procs:
            out, _ = await proc.communicate()
            assert proc.returncode == 0
            wins += json.loads(out)
        return wins
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
