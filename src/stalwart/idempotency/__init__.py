"""Idempotency keys for HTTP APIs (spec: ``/work/shared/specs/idempotency.md``; guide: ``docs/idempotency.md``).

A retried request with the same ``Idempotency-Key`` is executed at most once per (scope, key); repeats get the stored
response replayed byte for byte. The pure parts are the header parser and scope HMAC (``_keys``), the request
fingerprint (``_fingerprint``) and the record state machine (``_record``); stores implement
:class:`IdempotencyStore`.
"""

from __future__ import annotations

from ._fingerprint import FP_VERSION, FingerprintSpec, canonical_json, compute_fingerprint
from ._keys import InvalidKey, ParsedKey, derived_key, is_uuid, is_uuid4, parse_key_header, scope_id
from ._record import ClaimResult, Outcome, Record, RecordDecodeError, State, StoredResponse
from ._store import IdempotencyStore

__all__ = [
    "FP_VERSION",
    "ClaimResult",
    "FingerprintSpec",
    "IdempotencyStore",
    "InvalidKey",
    "Outcome",
    "ParsedKey",
    "Record",
    "RecordDecodeError",
    "State",
    "StoredResponse",
    "canonical_json",
    "compute_fingerprint",
    "derived_key",
    "is_uuid",
    "is_uuid4",
    "parse_key_header",
    "scope_id",
]
