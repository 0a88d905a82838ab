"""The ``IdempotencyStore`` protocol every store implements (spec §2.7, §2.14 to §2.16).

A store persists :class:`~stalwart.idempotency.Record` objects keyed by ``record_id`` and performs each transition of
the state machine in :mod:`._record` atomically, on its own clock. Contract (checked by the shared contract test
suite, ``tests/idempotency/test_idem_store_contract.py``, against every store):

- ``claim`` is an atomic insert-if-absent; exactly one concurrent caller gets ``claimed=True``. It never changes a
  record with another fingerprint. Repeating a claim with the same owner token while that claim holds returns
  ``claimed=True`` again. On an expired lease it abandons (strict) or reclaims (``reclaim=True``) in the same
  atomic step as the read. A record past its ``expires_at`` is treated as absent.
- ``heartbeat``, ``complete``, ``release`` and ``abandon`` are compare-and-set on ``(record_id, owner_token,
  fence)``: they return False and write nothing when the compare fails.
- Fences come from a store-wide counter and strictly increase with every claim or reclaim, even across purges.
- ``purge`` deletes only records whose ``expires_at`` has passed; a live in-progress record is never removed.
- Backend failures raise :class:`~stalwart.StoreUnavailable` (``raise … from exc``); an undecodable record raises
  :class:`~stalwart.idempotency.RecordDecodeError`. Nothing else escapes.
- Times (``lease_ttl``, ``retention``) are float seconds; the clock is the store's (memory and SQLite: the host's
  wall clock; Redis: ``TIME``; PostgreSQL: ``now()``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._record import ClaimResult, Record, StoredResponse

__all__ = ["IdempotencyStore"]


@runtime_checkable
class IdempotencyStore(Protocol):
    """Persistence of idempotency records; see the module docstring for the contract."""

    async def claim(
        self,
        record_id: str,
        *,
        fingerprint: bytes,
        fp_version: int,
        owner_token: str,
        lease_ttl: float,
        retention: float,
        reclaim: bool = False,
    ) -> ClaimResult:
        """Atomically claim ``record_id`` or report the current record (transitions T1 and T6).

        Args:
            record_id: the scope HMAC.
            fingerprint: the request fingerprint; a record with another one is returned unchanged.
            fp_version: the fingerprint definition's version (compared with the fingerprint).
            owner_token: this execution attempt's random token (repeat it to retry an ambiguous claim).
            lease_ttl: seconds the claim is held without a heartbeat.
            retention: seconds a record is kept after its lease or its completion.
            reclaim: on an expired lease (or an abandoned record), take it over instead of abandoning it.

        Raises:
            StoreUnavailable: the store failed or timed out.
            RecordDecodeError: the stored record is undecodable.
        """
        ...

    async def heartbeat(
        self, record_id: str, *, owner_token: str, fence: int, lease_ttl: float, retention: float
    ) -> bool:
        """Renew the lease (T2): True when the record is still ours and in progress."""
        ...

    async def complete(
        self, record_id: str, *, owner_token: str, fence: int, response: StoredResponse, retention: float
    ) -> bool:
        """Store the response (T3), from IN_PROGRESS or ABANDONED with our owner and fence; False otherwise."""
        ...

    async def release(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """Delete the record (T4) when ours and not completed: the attempt provably did not apply."""
        ...

    async def abandon(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """Mark our in-progress record ABANDONED (T5), e.g. on shutdown."""
        ...

    async def get(self, record_id: str) -> Record | None:
        """The current record, or None when absent or past its retention."""
        ...

    async def now(self) -> float:
        """The store's clock, seconds (for ``Retry-After`` computations and tests)."""
        ...

    async def purge(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` records whose ``expires_at`` has passed (T7); return how many were deleted."""
        ...

    async def list_abandoned(self, *, limit: int = 100) -> list[Record]:
        """Up to ``limit`` ABANDONED records, oldest first, for operators to reconcile (spec §2.12)."""
        ...

    async def default_secret(self) -> bytes | None:
        """A scope secret the store provides when none is configured (SQLite keeps one in its file), or None."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""
        ...
