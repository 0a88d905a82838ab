"""RedisStore and PostgresStore on the real servers for tests: a unique key prefix / schema, removed afterwards.

Used by the shared harness (``idem_harness.make_harness``, kinds ``redis`` and ``postgres``) and by the
store-specific tests. The clean-up is a synchronous finalizer, so it runs after the async fixtures closed the store.
"""

from __future__ import annotations

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


def postgres_store(request: pytest.FixtureRequest, **kwargs: Any) -> PostgresStore:
    """A ``PostgresStore.from_url`` on ``database_url`` in a schema unique to the test; dropped after the test."""
    url, schema = postgres_schema(request)
    return PostgresStore.from_url(url, schema=schema, **kwargs)
