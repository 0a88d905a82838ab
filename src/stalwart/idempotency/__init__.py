"""Idempotency keys for HTTP APIs (guide: ``docs/idempotency.md``; public names: ``docs/api.md``).

A retried request with the same ``Idempotency-Key`` is executed at most once per (scope, key); repeats get the stored
response replayed byte for byte. :class:`IdempotencyMiddleware` is pure ASGI (Starlette, FastAPI, any ASGI app);
stores implement :class:`IdempotencyStore`: :class:`MemoryStore`, :class:`SQLiteStore` (the embedded default),
``RedisStore`` and ``PostgresStore`` (imported on first use; they need redis-py and psycopg).
The pure parts are the header parser and scope HMAC (``_keys``), the request fingerprint (``_fingerprint``) and the
record state machine (``_record``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fingerprint import FP_VERSION, FingerprintSpec, canonical_json, compute_fingerprint
from ._identity import Identity, Resolver, scope_user_resolver, state_resolver
from ._keys import InvalidKey, ParsedKey, derived_key, is_uuid, is_uuid4, parse_key_header, scope_id
from ._middleware import IdempotencyMiddleware
from ._options import IdempotencyConfig
from ._record import ClaimResult, Outcome, Record, RecordDecodeError, State, StoredResponse
from ._state import IdempotencyState, current_idempotency, idempotent
from ._store import IdempotencyStore
from .stores import MemoryStore, SQLiteStore

if TYPE_CHECKING:
    from ._fastapi import idempotency_state

__all__ = [
    "ClaimResult",
    "FP_VERSION",
    "FingerprintSpec",
    "IdempotencyConfig",
    "IdempotencyMiddleware",
    "IdempotencyState",
    "IdempotencyStore",
    "Identity",
    "InvalidKey",
    "MemoryStore",
    "Outcome",
    "ParsedKey",
    "PostgresStore",
    "Record",
    "RecordDecodeError",
    "RedisStore",
    "Resolver",
    "SQLiteStore",
    "State",
    "StoredResponse",
    "canonical_json",
    "compute_fingerprint",
    "current_idempotency",
    "derived_key",
    "idempotency_state",
    "idempotent",
    "is_uuid",
    "is_uuid4",
    "parse_key_header",
    "scope_id",
    "scope_user_resolver",
    "state_resolver",
]


def __getattr__(name: str) -> Any:
    if name == "idempotency_state":
        from ._fastapi import idempotency_state  # noqa: PLC0415 - needs Starlette, imported on first use

        return idempotency_state
    if name == "RedisStore":
        from .stores.redis import RedisStore  # noqa: PLC0415 - needs redis-py, imported on first use

        return RedisStore
    if name == "PostgresStore":
        from .stores.postgres import PostgresStore  # noqa: PLC0415 - needs psycopg, imported on first use

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
