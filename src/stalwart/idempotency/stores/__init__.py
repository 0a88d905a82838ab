"""Idempotency stores behind the :class:`~stalwart.idempotency.IdempotencyStore` protocol.

``MemoryStore`` and ``SQLiteStore`` need nothing beyond the standard library.
"""

from __future__ import annotations

from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore"]
