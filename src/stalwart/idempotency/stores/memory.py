"""``MemoryStore``: idempotency records in a dict, for one process (spec §2.16.1).

Every transition is one critical section without an ``await``, so the event loop serialises them and no lock is
needed. Valid for a single process only: G1 (at most once per key) holds within the process and is lost on restart.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable

from stalwart._config import check_int
from stalwart._exceptions import StoreUnavailable
from stalwart.idempotency._record import (
    ClaimAction,
    ClaimResult,
    Record,
    State,
    StoredResponse,
    apply_abandon,
    apply_complete,
    apply_heartbeat,
    apply_release,
    decide_claim,
    is_expired,
    new_record,
    reclaim_record,
)

from ._common import wall_clock

__all__ = ["MemoryStore"]

logger = logging.getLogger("stalwart")


class MemoryStore:
    """An in-process :class:`~stalwart.idempotency.IdempotencyStore`.

    Bounded by ``max_entries``: when a new record does not fit, expired records are dropped first, then the oldest
    terminal (completed or abandoned) records. In-progress records are never evicted; a store full of them refuses
    new claims with :class:`~stalwart.StoreUnavailable` (HTTP 503). Expired records are also swept every
    ``sweep_every`` writes and by :meth:`purge` (which the middleware calls periodically).

    At construction a warning is logged (``stalwart`` logger) when ``WEB_CONCURRENCY`` says several worker processes
    run: each would have its own store, and a retry reaching another worker would execute again.

    Args:
        max_entries: most records kept (default 10 000).
        clock: the store clock, epoch seconds (default: the host's wall clock); tests pass a controllable one.
        sweep_every: drop expired records every this many claims (default 256).

    Raises:
        ValueError: ``max_entries`` or ``sweep_every`` below 1.
    """

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = wall_clock, sweep_every: int = 256
    ) -> None:
        self.max_entries = check_int(max_entries, "max_entries", minimum=1)
        self._sweep_every = check_int(sweep_every, "sweep_every", minimum=1)
        self._clock = clock
        self._records: dict[str, Record] = {}
        self._fence = 0
        self._writes = 0
        self._secret = secrets.token_bytes(32)
        self.evictions = 0
        """Terminal records evicted to make room (a metric)."""
        workers = os.environ.get("WEB_CONCURRENCY", "")
        if workers.isdigit() and int(workers) > 1:
            logger.warning(
                "MemoryStore is per process but WEB_CONCURRENCY=%s: a retry reaching another worker executes "
                "again; use SQLiteStore, RedisStore or PostgresStore",
                workers,
            )

    def __len__(self) -> int:
        return len(self._records)

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
        """See :meth:`IdempotencyStore.claim`; raises StoreUnavailable when full of in-progress records."""
        now = self._clock()
        current = self._records.get(record_id)
        action = decide_claim(
            current, fingerprint=fingerprint, fp_version=fp_version, owner_token=owner_token, now=now, reclaim=reclaim
        )
        if action is ClaimAction.INSERT:
            if current is None:
                self._make_room(now)
            self._fence += 1
            record = new_record(
                record_id,
                fingerprint=fingerprint,
                fp_version=fp_version,
                owner_token=owner_token,
                fence=self._fence,
                now=now,
                lease_ttl=lease_ttl,
                retention=retention,
            )
            self._records[record_id] = record
            return ClaimResult(True, record, now)
        assert current is not None
        if action is ClaimAction.OWN:
            return ClaimResult(True, current, now)
        if action is ClaimAction.RECLAIM:
            self._fence += 1
            record = reclaim_record(
                current, owner_token=owner_token, fence=self._fence, now=now, lease_ttl=lease_ttl, retention=retention
            )
            self._records[record_id] = record
            return ClaimResult(True, record, now)
        if action is ClaimAction.ABANDON:
            abandoned = apply_abandon(current, owner_token=current.owner_token, fence=current.fence, now=now)
            assert abandoned is not None
            self._records[record_id] = abandoned
            return ClaimResult(False, abandoned, now)
        return ClaimResult(False, current, now)

    def _make_room(self, now: float) -> None:
        self._writes += 1
        if self._writes % self._sweep_every == 0 or len(self._records) >= self.max_entries:
            self._sweep(now)
        if len(self._records) < self.max_entries:
            return
        terminal = sorted(
            (r for r in self._records.values() if r.state is not State.IN_PROGRESS), key=lambda r: r.updated_at
        )
        excess = len(self._records) - self.max_entries + 1
        if len(terminal) < excess:
            raise StoreUnavailable(f"MemoryStore is full of in-progress records (max_entries={self.max_entries})")
        # Evict a little more than needed so the scan is amortised over several claims.
        for record in terminal[: max(excess, min(len(terminal), self.max_entries // 100))]:
            del self._records[record.record_id]
            self.evictions += 1

    def _sweep(self, now: float, limit: int | None = None) -> int:
        expired = [rid for rid, r in self._records.items() if is_expired(r, now)]
        if limit is not None:
            expired = expired[:limit]
        for rid in expired:
            del self._records[rid]
        return len(expired)

    async def heartbeat(
        self, record_id: str, *, owner_token: str, fence: int, lease_ttl: float, retention: float
    ) -> bool:
        """See :meth:`IdempotencyStore.heartbeat`."""
        now = self._clock()
        new = apply_heartbeat(
            self._records.get(record_id),
            owner_token=owner_token,
            fence=fence,
            now=now,
            lease_ttl=lease_ttl,
            retention=retention,
        )
        if new is None:
            return False
        self._records[record_id] = new
        return True

    async def complete(
        self, record_id: str, *, owner_token: str, fence: int, response: StoredResponse, retention: float
    ) -> bool:
        """See :meth:`IdempotencyStore.complete`."""
        now = self._clock()
        new = apply_complete(
            self._records.get(record_id),
            owner_token=owner_token,
            fence=fence,
            response=response,
            now=now,
            retention=retention,
        )
        if new is None:
            return False
        self._records[record_id] = new
        return True

    async def release(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """See :meth:`IdempotencyStore.release`."""
        if not apply_release(self._records.get(record_id), owner_token=owner_token, fence=fence, now=self._clock()):
            return False
        del self._records[record_id]
        return True

    async def abandon(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """See :meth:`IdempotencyStore.abandon`."""
        new = apply_abandon(self._records.get(record_id), owner_token=owner_token, fence=fence, now=self._clock())
        if new is None:
            return False
        self._records[record_id] = new
        return True

    async def get(self, record_id: str) -> Record | None:
        """See :meth:`IdempotencyStore.get`."""
        record = self._records.get(record_id)
        if record is None or is_expired(record, self._clock()):
            return None
        return record

    async def now(self) -> float:
        """The store clock, epoch seconds."""
        return self._clock()

    async def purge(self, *, limit: int = 1000) -> int:
        """Drop up to ``limit`` records past their retention; live in-progress records are never touched."""
        return self._sweep(self._clock(), limit)

    async def list_abandoned(self, *, limit: int = 100) -> list[Record]:
        """Up to ``limit`` abandoned records, oldest first."""
        now = self._clock()
        found = [r for r in self._records.values() if r.state is State.ABANDONED and not is_expired(r, now)]
        found.sort(key=lambda r: r.updated_at)
        return found[:limit]

    async def default_secret(self) -> bytes:
        """A random per-process secret: the store is per process, so no other process needs to share it."""
        return self._secret

    async def aclose(self) -> None:
        """Drop every record."""
        self._records.clear()

    def __repr__(self) -> str:
        return f"MemoryStore(records={len(self._records)}, max_entries={self.max_entries})"
