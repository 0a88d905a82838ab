"""Idempotency stores behind the :class:`~stalwart.idempotency.IdempotencyStore` protocol.

``MemoryStore`` and ``SQLiteStore`` need nothing beyond the standard library; ``RedisStore`` and ``PostgresStore``
are imported on first use (they need redis-py and psycopg).
"""

from __future__ import annotations

from typing import Any

from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["MemoryStore", "PostgresStore", "RedisStore", "SQLiteStore"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from .redis import RedisStore  # noqa: PLC0415 - needs redis-py, imported on first use

        return RedisStore
    if name == "PostgresStore":
        from .postgres import PostgresStore  # noqa: PLC0415 - needs psycopg, imported on first use

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
