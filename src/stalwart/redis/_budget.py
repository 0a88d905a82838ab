"""``RedisRetryBudget``: one Finagle-style retry budget shared by a fleet of processes through Redis.

Model. The ratio budget of :meth:`stalwart.RetryBudget.ratio`, counted over the whole fleet: retries are allowed
while ``calls x percent / 100 + min_per_second x ttl - retries >= 1``, where ``calls`` and ``retries`` are the
fleet's totals over the last ``ttl`` seconds and the reserve (``min_per_second x ttl``) is fleet-wide too (a reserve
per process would grow with the fleet, which is what a budget must prevent). The ratio model is the one that shares
well: counts add up, so batched updates from many processes are exact sums in any order; a token bucket's clamps
(never below 0, never above the maximum) would make batched updates order-dependent.

Layout. One hash per budget, under one hash tag (one slot on Redis Cluster)::

    {<prefix>:<name>}:window   fields c<slice> / r<slice>: calls / retries counted in that slice of ttl/10 seconds

The slice index comes from the server's ``TIME``, so hosts' clocks never disagree about the window; the key expires
``ttl`` seconds after the last sync, so an idle budget leaves nothing behind.

Batching. The hot path never talks to Redis: a call's first attempt bumps a C-level counter (lock-free, as the
local ratio budget does). A background thread (the hook protocol is synchronous, and a thread keeps Redis round trips
off every event loop) runs one Lua script every ``sync_interval`` seconds: it adds this process's new calls and
granted retries to the current slice, drops expired slices, and returns the fleet's totals. ``try_acquire_retry``
decides locally from the last totals plus this process's activity since; a granted retry also wakes the thread so
that the fleet hears of it at once. **Staleness bound**: the other processes' activity is seen at most
``sync_interval`` plus one round trip late (0.25 s by default), so during a sudden storm each process may grant, on
top of the budget, at most what the fleet's remaining allowance was at its last sync, once.

Outage. When Redis cannot be reached (or answers with an error), the budget logs one warning on the ``stalwart``
logger and decides from this process's own counts over the window (a per-process ratio budget, with the reserve per
process), which it always keeps; when Redis answers again it logs that once and goes back to the fleet's totals.
Counts made during the outage are not sent later. The thread is a daemon; call :meth:`RedisRetryBudget.close` (or use
``with``) to stop it after a last sync. It holds the budget weakly: a budget nobody refers to any more is
garbage-collected even if never closed, and then its thread ends and the client it owns (``from_url``) is closed;
its counts not synced yet are lost.

Fork. A budget created before ``fork`` (gunicorn ``--preload``, a multiprocessing or prefork pool) works in the
child (the shared machinery of :class:`~stalwart.redis._common.SyncThread`): the fork waits for the lock around the
counts (held for an instant), so the child's copy is consistent and the lock free; in the child the lock held
through a round trip is new, the counts the parent had not sent yet and its local window are dropped (the parent
sends its own counts, once), and the budget starts a thread of its own. The child keeps the parent's last fleet
totals until its first sync.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from typing import Any, Self

import redis

from stalwart._budget import RetryBudgetStatistics
from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._config import check_int, check_percent, to_seconds, to_seconds_or_none, to_units

from ._common import MAX_MS, REDIS_ERRORS, OutageLog, SyncThread, check_client, check_key_part, client_from_url

__all__ = ["RedisRetryBudget"]

_SLICES = 10

# KEYS[1] the window hash; ARGV: new calls, new retries, slice length (ms), slices in the window.
# Returns {calls, retries} over the live slices (including this sync's). TIME before writes needs Redis >= 5.
_SYNC = """
local t = redis.call('TIME')
local slice_ms = tonumber(ARGV[3])
local slices = tonumber(ARGV[4])
local current = math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / slice_ms)
if tonumber(ARGV[1]) > 0 then redis.call('HINCRBY', KEYS[1], 'c' .. current, ARGV[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', KEYS[1], 'r' .. current, ARGV[2]) end
local fields = redis.call('HGETALL', KEYS[1])
local calls, retries, stale = 0, 0, {}
for i = 1, #fields, 2 do
  local slice = tonumber(string.sub(fields[i], 2))
  if slice == nil or slice <= current - slices or slice > current then
    stale[#stale + 1] = fields[i]
  elseif string.sub(fields[i], 1, 1) == 'c' then
    calls = calls + tonumber(fields[i + 1])
  else
    retries = retries + tonumber(fields[i + 1])
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
redis.call('PEXPIRE', KEYS[1], slice_ms * slices)
return {calls, retries}
"""


class _LocalWindow:
    """This process's calls and retries per slice over the last ``slices`` slices (pure: the caller passes ``now``)."""

    __slots__ = ("_counts", "_slice_length", "_slices")

    def __init__(self, ttl: float) -> None:
        self._slice_length = ttl / _SLICES
        self._slices = _SLICES
        self._counts: dict[int, list[int]] = {}

    def _current(self, now: float) -> int:
        current = math.floor(now / self._slice_length)
        for old in [s for s in self._counts if s <= current - self._slices]:
            del self._counts[old]
        return current

    def add(self, now: float, calls: int, retries: int) -> None:
        if calls or retries:
            counts = self._counts.setdefault(self._current(now), [0, 0])
            counts[0] += calls
            counts[1] += retries

    def totals(self, now: float) -> tuple[int, int]:
        self._current(now)
        return sum(c for c, _ in self._counts.values()), sum(r for _, r in self._counts.values())


class RedisRetryBudget:
    """A retry budget shared by every process that uses the same Redis, ``prefix`` and ``name``.

    Implements the retry budget hook (pass it as ``budget=`` to :class:`~stalwart.Retry`, :class:`~stalwart.Hedge`
    or the httpx transport) with the ratio model of :meth:`stalwart.RetryBudget.ratio`, counted over the fleet. The
    module docstring explains the batching, its staleness bound and the fallback to a local budget.

    Args:
        client: a synchronous ``redis.Redis`` (or ``redis.RedisCluster``) client; give it socket timeouts (the
            background thread waits on it, never a request). :meth:`from_url` builds one.
        name: the budget's name (one per dependency), also part of the key; no ``{`` or ``}``.
        percent: retries allowed per 100 calls of the fleet, in (0, 100]; default ``20.0``.
        ttl: the window in seconds, ``> 0`` and at most 2**52 ms (about 142,700 years); default ``10.0``.
        min_per_second: retries per second always allowed to the whole fleet (per process during an outage),
            ``>= 0``; default ``10``.
        prefix: the key prefix; no ``{`` or ``}``; default ``"stalwart:budget"``.
        sync_interval: seconds between syncs, ``> 0`` (default ``0.25``); ``None`` starts no thread: call
            :meth:`sync` yourself (tests do).
        clock: the monotonic clock of the local window.
        close_client: whether :meth:`close` closes ``client`` too (``from_url`` sets it).

    Raises:
        TypeError, ValueError: an invalid parameter, naming it.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        name: str = "retry-budget",
        *,
        percent: float = 20.0,
        ttl: float = 10.0,
        min_per_second: int = 10,
        prefix: str = "stalwart:budget",
        sync_interval: float | None = 0.25,
        clock: Clock = SYSTEM_CLOCK,
        close_client: bool = False,
    ) -> None:
        check_client(client)
        check_key_part(name, "name")
        check_key_part(prefix, "prefix")
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must implement the Clock protocol, got {clock!r}")
        self.name = name
        self.prefix = prefix
        self.key = f"{{{prefix}:{name}}}:window"
        self._percent = check_percent(percent, "percent")
        self._ttl = to_seconds(ttl, "ttl", allow_zero=False)
        self._min_per_second = check_int(min_per_second, "min_per_second", minimum=0)
        self._reserve = self._min_per_second * self._ttl
        self._interval = to_seconds_or_none(sync_interval, "sync_interval", allow_zero=False)
        window_ms = to_units(ttl, "ttl", per_second=1000, maximum=MAX_MS)  # the scripts' count of milliseconds
        self._slice_ms = max(1, round(window_ms / _SLICES))
        self._client = client
        self._close_client = close_client
        self._script = client.register_script(_SYNC)
        self._clock = clock
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()  # one sync at a time (the thread and explicit sync() calls)
        self._deposits = itertools.count()  # next() is atomic: the lock-free hot path
        self._reads = 0  # our own next() calls
        self._seen = 0  # deposits already taken into a sync
        self._pending_retries = 0  # granted since the last snapshot
        self._inflight = (0, 0)  # calls and retries of the sync in progress
        self._fleet = (0, 0)  # the fleet's calls and retries at the last sync
        self._shared = False  # whether the last sync reached Redis (False until the first one does)
        self._outage = OutageLog(
            f"retry budget {name!r}", "using a local budget until it can", "sharing the fleet's budget"
        )
        self._local = _LocalWindow(self._ttl)
        self._granted = 0
        self._refused = 0
        self._closed = False
        self._thread = SyncThread(
            f"stalwart-budget-{name}", self._interval, self, close=client.close if close_client else None
        )
        self._thread.start()

    def _fork_locks(self) -> Iterator[threading.Lock]:
        """The lock held across ``fork`` (see :class:`~stalwart.redis._common.SyncThread`)."""
        yield self._lock

    def _after_fork(self) -> None:
        """In a forked child (only this thread runs; ``_lock`` free): a new round-trip lock, and the parent's unsent
        counts and local window dropped (the parent sends them)."""
        self._sync_lock = threading.Lock()
        self._outage.after_fork()
        self._take_calls()  # the parent's calls since its last sync
        self._pending_retries = 0
        self._inflight = (0, 0)
        self._local = _LocalWindow(self._ttl)

    @classmethod
    def from_url(
        cls,
        url: str,
        name: str = "retry-budget",
        *,
        socket_timeout: float = 1.0,
        **kwargs: Any,
    ) -> RedisRetryBudget:
        """A budget with its own client for ``url`` (``redis://``, ``rediss://``, ``unix://``), closed by :meth:`close`.

        Args:
            url: the server URL.
            name: as for the constructor.
            socket_timeout: seconds for connecting and for each command (default ``1.0``); commands are not retried
                by the client (the next sync is the retry).
            **kwargs: the constructor's keyword arguments.

        Raises:
            ValueError: ``url`` has no supported scheme.
            TypeError, ValueError: an invalid parameter, as for the constructor.
        """
        return cls(client_from_url(url, socket_timeout), name, close_client=True, **kwargs)

    # ------------------------------------------------------------------ the hook protocol
    def record_success(self, first: bool) -> None:
        """A call's first attempt ended: count the call (later attempts count nothing). No lock, no I/O."""
        if first:
            next(self._deposits)

    record_failure = record_success  # a call is a call whatever its first outcome

    def try_acquire_retry(self) -> bool:
        """Whether one retry may be made now, from the last fleet totals plus this process's activity since."""
        with self._lock:
            allowed = self._allowance() >= 1.0
            if allowed:
                self._pending_retries += 1
                self._granted += 1
            else:
                self._refused += 1
        if allowed:
            self._thread.wake()  # let the fleet hear of it soon
        return allowed

    def _take_calls(self) -> int:
        """Calls counted since the last take; lock held."""
        total = next(self._deposits) - self._reads
        self._reads += 1
        fresh = total - self._seen
        self._seen = total
        return fresh

    def _peek_calls(self) -> int:
        """Calls counted since the last take, without taking them; lock held."""
        total = next(self._deposits) - self._reads
        self._reads += 1
        return total - self._seen

    def _allowance(self) -> float:
        """Retries the budget would allow now (may be negative); lock held."""
        pending_calls = self._peek_calls()
        if self._shared:
            calls = self._fleet[0] + self._inflight[0] + pending_calls
            retries = self._fleet[1] + self._inflight[1] + self._pending_retries
        else:
            local_calls, local_retries = self._local.totals(self._clock.monotonic())
            calls = local_calls + pending_calls
            retries = local_retries + self._pending_retries
        return calls * self._percent / 100.0 + self._reserve - retries

    # ------------------------------------------------------------------ syncing
    def sync(self) -> bool:
        """Send this process's new counts to Redis and read the fleet's totals now; return whether Redis answered.

        The background thread calls it every ``sync_interval``; call it yourself with ``sync_interval=None``.
        Never raises for a Redis problem (it falls back to the local budget and logs, once per outage).
        """
        with self._sync_lock:
            with self._lock:
                calls, retries = self._take_calls(), self._pending_retries
                self._pending_retries = 0
                self._local.add(self._clock.monotonic(), calls, retries)
                self._inflight = (calls, retries)
            try:
                reply = self._script(keys=[self.key], args=[calls, retries, self._slice_ms, _SLICES])
                fleet = (int(reply[0]), int(reply[1]))
            except REDIS_ERRORS as exc:
                with self._lock:
                    self._inflight = (0, 0)
                    self._shared = False
                self._outage.failed(exc)
                return False
            with self._lock:
                self._fleet = fleet
                self._inflight = (0, 0)
                self._shared = True
            self._outage.answered()
            return True

    # ------------------------------------------------------------------ lifecycle and introspection
    @property
    def shared(self) -> bool:
        """Whether the last sync reached Redis (``False``: deciding from this process's own counts)."""
        return self._shared

    @property
    def percent(self) -> float:
        """Retries allowed per 100 calls."""
        return self._percent

    @property
    def ttl(self) -> float:
        """The window, seconds."""
        return self._ttl

    def statistics(self) -> RetryBudgetStatistics:
        """A snapshot; ``balance`` is the number of retries the budget would allow now (``kind`` is ``"ratio"``)."""
        with self._lock:
            available = max(0, math.floor(self._allowance()))
            return RetryBudgetStatistics(self.name, "ratio", available, available > 0, self._granted, self._refused)

    def close(self) -> None:
        """Stop the thread after a last sync, and close the client if the budget owns it. Idempotent; blocking.

        A budget never closed is cleaned up when it is garbage-collected, without the last sync.
        """
        if self._closed:
            return
        self._closed = True
        self._thread.stop()  # a last sync
        if self._close_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RedisRetryBudget({self.name!r}, percent={self._percent!r}, ttl={self._ttl!r}, "
            f"min_per_second={self._min_per_second!r}, prefix={self.prefix!r})"
        )
