"""The middleware's own answers (spec §2.11) and the in-process cache of completed records (spec §2.8 step 5).

:class:`Answers` turns an existing record into the client's answer — 422 for another request with the key, the
replay of a COMPLETED record, the outcome-unknown replay of an ABANDONED one, 409 while one is in progress — and
builds the problem+json answers, counting each in the middleware's metrics.
"""

from __future__ import annotations

import math
import random as random_module
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from stalwart._clock import Clock
from stalwart._events import IdempotentReplay, emit, hooks_installed

from ._fingerprint import FP_VERSION
from ._record import Record, State
from ._replay import ProblemFactory, replay_response, send_response

if TYPE_CHECKING:
    from ._routing import Route

__all__ = ["Answers", "ReplayCache", "unavailable_retry_after"]

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


def unavailable_retry_after(random: Callable[[], float]) -> int:
    """The ``Retry-After`` of a 503 "store unavailable" (spec §2.11): 1 or 2 seconds (``int``), jittered by
    ``random`` (``() -> float`` in [0, 1)) so that clients turned away together do not come back together."""
    return 1 + int(random() * 2)


class ReplayCache:
    """An LRU of COMPLETED records, each valid for its remaining retention measured on the local clock.

    Never holds IN_PROGRESS or ABANDONED records (an abandoned record can still change).
    """

    __slots__ = ("_clock", "_entries", "_size")

    def __init__(self, size: int, clock: Clock) -> None:
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Record, float]] = OrderedDict()

    def get(self, record_id: str) -> Record | None:
        """The cached record, or None when absent or past its retention."""
        entry = self._entries.get(record_id)
        if entry is None:
            return None
        record, valid_until = entry
        if self._clock.monotonic() >= valid_until:
            del self._entries[record_id]
            return None
        self._entries.move_to_end(record_id)
        return record

    def put(self, record: Record, store_now: float) -> None:
        """Cache a COMPLETED record read at store time ``store_now``."""
        if record.state is not State.COMPLETED:
            return
        self._entries[record.record_id] = (record, self._clock.monotonic() + (record.expires_at - store_now))
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


class Answers:
    """Builds and sends the middleware's answers, counting them.

    Args:
        problems: the problem+json factory.
        count: increments a named metric.
        cache: the optional cache of completed records (fed by replays).
        random: ``() -> float`` in [0, 1) jittering the 503's ``Retry-After`` (default None: :func:`random.random`,
            looked up at each use).
    """

    __slots__ = ("_count", "_random", "cache", "problems")

    def __init__(
        self,
        problems: ProblemFactory,
        count: Callable[[str], None],
        cache: ReplayCache | None,
        random: Callable[[], float] | None = None,
    ) -> None:
        self.problems = problems
        self._count = count
        self.cache = cache
        self._random = random

    async def problem(
        self, send: Send, status: int, name: str, title: str, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """Send a problem+json answer."""
        await send_response(send, self.problems.build(status, name, title), extra)

    async def unavailable(self, send: Send, retry_after: int | None = None) -> None:
        """503: the store cannot decide; the handler does not run (G4). ``retry_after``: seconds (``int``); default
        the jittered 1-2 s of :func:`unavailable_retry_after`."""
        if retry_after is None:
            retry_after = unavailable_retry_after(self._random or random_module.random)
        self._count("store_unavailable_503")
        await self.problem(
            send,
            503,
            "idempotency-store-unavailable",
            "Idempotency store unavailable",
            [(b"retry-after", str(retry_after).encode())],
        )

    async def existing(
        self,
        route: Route,
        scope: MutableMapping[str, Any],
        send: Send,
        record: Record,
        *,
        fingerprint: bytes,
        store_now: float | None,
    ) -> None:
        """Answer from an existing record: 422, replay, outcome-unknown or 409 (``store_now``: None from the cache)."""
        if record.fingerprint != fingerprint or record.fp_version != FP_VERSION:
            self._count("mismatches_422")
            await self.problem(send, 422, "idempotency-key-reused", "Idempotency-Key reused with a different request")
            return
        if record.state is State.COMPLETED:
            if store_now is not None and self.cache is not None:
                self.cache.put(record, store_now)
            self._count("replays")
            response = replay_response(record, route.replay_header)
            if hooks_installed():
                emit(IdempotentReplay(response[0], scope["path"]))
            await send_response(send, response)
            return
        if record.state is State.ABANDONED:
            if store_now is not None and record.updated_at == store_now:
                # This request's claim found the lease lapsed and abandoned the record (T6 strict): the store writes
                # the abandonment at the instant it answers with. Later requests only read it: not counted again.
                self._count("abandoned")
            status, headers, body = self.problems.build(
                route.cfg.abandoned_status,
                "idempotency-outcome-unknown",
                "Outcome unknown",
                "The original request stopped without recording its outcome; it will not run again. "
                "Reconcile out of band.",
            )
            if hooks_installed():
                emit(IdempotentReplay(status, scope["path"]))
            await send_response(send, (status, headers, body), [(route.replay_header, b"true")])
            return
        lease_left = record.lease_remaining(store_now) if store_now is not None else route.retry_after_cap
        await self.in_progress(send, max(1, math.ceil(min(lease_left, route.retry_after_cap))))

    async def in_progress(self, send: Send, retry_after: int) -> None:
        """409: the original request still runs."""
        self._count("conflicts_409")
        await self.problem(
            send,
            409,
            "idempotency-request-in-progress",
            "A request with this Idempotency-Key is in progress",
            [(b"retry-after", str(retry_after).encode())],
        )
