"""The idempotency record and its state machine (pure), spec §2.6, §2.7 and §2.9.

Every store applies these transitions inside its own atomic section (a critical section with no ``await`` for the
memory store, a ``BEGIN IMMEDIATE`` transaction for SQLite, ``SELECT … FOR UPDATE`` for PostgreSQL; the Redis Lua
scripts mirror them line for line). Nothing here sleeps, awaits, locks or reads a clock: ``now`` is the store's
clock, passed in.

States::

    ABSENT --claim--> IN_PROGRESS(owner, fence, lease) --complete--> COMPLETED
                          |  heartbeat (CAS owner+fence) extends the lease
                          |  release (CAS) -> ABSENT          owner-abandon (CAS) -> ABANDONED
                          |  lease expired, observed by a claim: strict -> ABANDONED, reclaim -> new owner, fence
    ABANDONED --complete (same owner+fence, late completion)--> COMPLETED

Every write after the claim is a compare-and-set on ``(record_id, owner_token, fence)``; a record past its
``expires_at`` counts as absent for every transition.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Literal, TypeGuard

__all__ = [
    "SCHEMA_VERSION",
    "ClaimAction",
    "ClaimResult",
    "Outcome",
    "Record",
    "RecordDecodeError",
    "State",
    "StoredResponse",
    "apply_abandon",
    "apply_complete",
    "apply_heartbeat",
    "apply_release",
    "classify_outcome",
    "decide_claim",
    "decode_headers",
    "encode_headers",
    "is_expired",
    "new_record",
    "reclaim_record",
]

SCHEMA_VERSION = 1
"""Version of the stored record layout; a record with another version is undecodable (HTTP 503)."""


class State(enum.StrEnum):
    """The state of a stored record."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ABANDONED = "abandoned"


class Outcome(enum.StrEnum):
    """What a record holds: a real ``response`` or a synthetic 500 for an ``exception`` (completed records), or
    ``unknown`` (abandoned records: the execution stopped without recording its outcome)."""

    RESPONSE = "response"
    EXCEPTION = "exception"
    UNKNOWN = "unknown"


class RecordDecodeError(ValueError):
    """A stored record cannot be decoded or has an unknown schema version (the middleware answers 503)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The response a completion stores (spec §2.6, §2.10).

    Attributes:
        outcome: ``Outcome.RESPONSE`` or ``Outcome.EXCEPTION``.
        status: the exact status code.
        headers: filtered raw ``(name, value)`` pairs, in order.
        body: the raw body bytes (empty when omitted).
        body_omitted: True when the body exceeded ``max_stored_body`` or ``max_capture_duration``, or was incomplete.
    """

    outcome: Outcome
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    body_omitted: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """One stored idempotency record (spec §2.6). Times are seconds on the store's clock.

    Attributes:
        record_id: the scope HMAC (64 hex characters).
        state: see :class:`State`.
        fingerprint: the request fingerprint (32 bytes).
        fp_version: the fingerprint definition's version.
        owner_token: 32 hex characters (128 random bits), new per execution attempt.
        fence: monotonic store-wide integer assigned at every claim or reclaim; never decreases.
        attempt: executions started for this record.
        lease_expires_at: when the owner's lease lapses unless renewed.
        created_at: first claim.
        updated_at: last write.
        completed_at: completion time, or None.
        expires_at: retention deadline (lease + retention while in progress; completion + retention after).
        outcome: the stored outcome: ``Outcome.UNKNOWN`` once abandoned (until a late completion stores the real
            one), None while in progress.
        status: the stored status code, or None.
        headers: stored response headers (filtered, ordered raw pairs).
        body: stored response body.
        body_omitted: True when the body was not stored.
        schema_version: layout version, :data:`SCHEMA_VERSION`.
    """

    record_id: str
    state: State
    fingerprint: bytes
    fp_version: int
    owner_token: str
    fence: int
    attempt: int
    lease_expires_at: float
    created_at: float
    updated_at: float
    expires_at: float
    completed_at: float | None = None
    outcome: Outcome | None = None
    status: int | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    body_omitted: bool = False
    schema_version: int = SCHEMA_VERSION

    def lease_remaining(self, now: float) -> float:
        """Seconds (``float``, never negative) until the lease lapses at store time ``now``."""
        left = self.lease_expires_at - now
        return left if left > 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What :meth:`IdempotencyStore.claim` found or did.

    Attributes:
        claimed: True when the caller now owns the record (fresh claim, its own earlier claim, or a reclaim).
        record: the record after the claim's transition (the caller's record when ``claimed``).
        now: the store's clock when it decided (to compute ``Retry-After`` from the lease).
    """

    claimed: bool
    record: Record
    now: float


class ClaimAction(enum.Enum):
    """What a claim does to the current record (see :func:`decide_claim`)."""

    INSERT = "insert"  # absent or past retention: write a new record with a new fence
    OWN = "own"  # already ours (a repeated claim with the same owner token): claimed, no write
    RECLAIM = "reclaim"  # expired lease or abandoned, reclaim mode: new owner, new fence, attempt + 1
    ABANDON = "abandon"  # expired lease, strict mode: mark ABANDONED (same owner and fence)
    NONE = "none"  # live, completed, abandoned (strict) or another fingerprint: report it, no write


def is_expired(record: Record, now: float) -> bool:
    """True when the record's retention has passed (``expires_at <= now``): it is treated as absent and purgeable.

    An in-progress record's ``expires_at`` is its lease plus the retention, so a live lease is never expired.
    """
    return record.expires_at <= now


def decide_claim(
    current: Record | None,
    *,
    fingerprint: bytes,
    fp_version: int,
    owner_token: str,
    now: float,
    reclaim: bool,
) -> ClaimAction:
    """Decide a claim (transition T1, and T6 lease expiry observed by the claim), spec §2.7.

    A different fingerprint never changes the record, whatever its state (the caller answers 422). A claim that
    finds its own owner token in progress is claimed again (the claim is idempotent, spec §2.8 step 6).
    """
    if current is None or is_expired(current, now):
        return ClaimAction.INSERT
    if current.fingerprint != fingerprint or current.fp_version != fp_version:
        return ClaimAction.NONE
    if current.state is State.IN_PROGRESS:
        if current.owner_token == owner_token:
            return ClaimAction.OWN
        if current.lease_expires_at < now:
            return ClaimAction.RECLAIM if reclaim else ClaimAction.ABANDON
        return ClaimAction.NONE
    if current.state is State.ABANDONED and reclaim:
        return ClaimAction.RECLAIM
    return ClaimAction.NONE


def new_record(
    record_id: str,
    *,
    fingerprint: bytes,
    fp_version: int,
    owner_token: str,
    fence: int,
    now: float,
    lease_ttl: float,
    retention: float,
) -> Record:
    """A fresh IN_PROGRESS record (attempt 1) for a claim."""
    lease = now + lease_ttl
    return Record(
        record_id=record_id,
        state=State.IN_PROGRESS,
        fingerprint=fingerprint,
        fp_version=fp_version,
        owner_token=owner_token,
        fence=fence,
        attempt=1,
        lease_expires_at=lease,
        created_at=now,
        updated_at=now,
        expires_at=lease + retention,
    )


def reclaim_record(
    current: Record, *, owner_token: str, fence: int, now: float, lease_ttl: float, retention: float
) -> Record:
    """The record after a reclaim: new owner, the new (higher) fence, ``attempt + 1``, a fresh lease, no outcome."""
    lease = now + lease_ttl
    return replace(
        current,
        state=State.IN_PROGRESS,
        outcome=None,
        owner_token=owner_token,
        fence=fence,
        attempt=current.attempt + 1,
        lease_expires_at=lease,
        updated_at=now,
        expires_at=lease + retention,
    )


def _owns(record: Record | None, owner_token: str, fence: int, now: float) -> TypeGuard[Record]:
    # The compare of every CAS: same owner token and fence, and the record not past its retention (then absent).
    return (
        record is not None
        and record.owner_token == owner_token
        and record.fence == fence
        and not is_expired(record, now)
    )


def apply_abandon(current: Record | None, *, owner_token: str, fence: int, now: float) -> Record | None:
    """T5 owner-abandon (and T6 strict, with the record's own owner and fence): IN_PROGRESS → ABANDONED with
    ``outcome=unknown`` (spec §2.6), ``updated_at`` set to ``now``.

    Returns the new record, or None when the compare fails (another owner or fence, or not in progress).
    The retention deadline is kept, so an abandoned record outlives its lease by the retention.
    """
    if not _owns(current, owner_token, fence, now) or current.state is not State.IN_PROGRESS:
        return None
    return replace(current, state=State.ABANDONED, outcome=Outcome.UNKNOWN, updated_at=now)


def apply_heartbeat(
    current: Record | None, *, owner_token: str, fence: int, now: float, lease_ttl: float, retention: float
) -> Record | None:
    """T2 heartbeat: renew the lease of an IN_PROGRESS record we own; None when the compare fails."""
    if not _owns(current, owner_token, fence, now) or current.state is not State.IN_PROGRESS:
        return None
    lease = now + lease_ttl
    expires = max(current.expires_at, lease + retention)
    return replace(current, lease_expires_at=lease, updated_at=now, expires_at=expires)


def apply_complete(
    current: Record | None,
    *,
    owner_token: str,
    fence: int,
    response: StoredResponse,
    now: float,
    retention: float,
) -> Record | None:
    """T3 complete: IN_PROGRESS or ABANDONED (late completion, same owner and fence) → COMPLETED.

    Returns the completed record, or None when the compare fails. A completed record is never overwritten.
    """
    if not _owns(current, owner_token, fence, now) or current.state is State.COMPLETED:
        return None
    return replace(
        current,
        state=State.COMPLETED,
        updated_at=now,
        completed_at=now,
        expires_at=now + retention,
        outcome=response.outcome,
        status=response.status,
        headers=response.headers,
        body=b"" if response.body_omitted else response.body,
        body_omitted=response.body_omitted,
    )


def apply_release(current: Record | None, *, owner_token: str, fence: int, now: float) -> bool:
    """T4 release: True when the record (IN_PROGRESS, or ABANDONED by a lapsed lease) is ours and may be deleted."""
    return _owns(current, owner_token, fence, now) and current is not None and current.state is not State.COMPLETED


def classify_outcome(
    status: int | None,
    *,
    started: bool,
    exception: bool,
    release_requested: bool,
    release_statuses: frozenset[int],
    store_5xx: bool,
    release_on_exception: bool,
) -> Literal["store", "release"]:
    """Decide whether a finished request's result is stored or the record released (spec §2.9, strict column).

    Args:
        status: the response status, or None when no response started.
        started: whether the endpoint started executing (False when the framework answered before it: request
            validation, routing); without a marker integration, pass True.
        exception: the handler raised (not a cancellation).
        release_requested: the handler marked itself safe to retry (``release()`` helper or a retryable exception).
        release_statuses: statuses meaning "not processed, retry" (default 401, 403, 408, 425, 429, 503).
        store_5xx: store 500/502/504 returned by the handler (default True); False releases them.
        release_on_exception: release instead of storing on an unhandled exception (at-least-once; default False).
    """
    if release_requested or not started:
        return "release"
    if exception:
        return "release" if release_on_exception else "store"
    if status is None:
        return "store"
    if status in release_statuses:
        return "release"
    if status >= 500 and not store_5xx:
        return "release"
    return "store"


def encode_headers(headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]]) -> bytes:
    """Serialise ordered raw header pairs: each name and value preceded by its 4-byte big-endian length."""
    out = bytearray()
    for name, value in headers:
        out += len(name).to_bytes(4, "big") + name + len(value).to_bytes(4, "big") + value
    return bytes(out)


def decode_headers(data: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """Inverse of :func:`encode_headers`.

    Raises:
        RecordDecodeError: truncated or malformed data.
    """
    if type(data) is not bytes:
        data = bytes(data)  # slices of bytes are bytes (a memoryview's would be views)
    pairs: list[tuple[bytes, bytes]] = []
    from_bytes = int.from_bytes
    pos = 0
    n = len(data)
    while pos < n:
        start = pos + 4  # the name
        end = start + from_bytes(data[pos:start], "big")
        pos = end + 4  # the value
        if pos > n:
            raise RecordDecodeError("truncated header data")
        value_end = pos + from_bytes(data[end:pos], "big")
        if value_end > n:
            raise RecordDecodeError("truncated header data")
        pairs.append((data[start:end], data[pos:value_end]))
        pos = value_end
    return tuple(pairs)
