"""``RedisCircuitStore``: circuit breakers shared by a fleet of processes through Redis.

``CircuitBreaker(name, ..., store=RedisCircuitStore(client, prefix=...))`` keeps the breaker's state and window
counts in Redis, so that the processes of a service trip, probe and close together: when one replica sees the outage,
all stop calling.

Layout. Per breaker, two keys under one hash tag (one slot on Redis Cluster)::

    {<prefix>:<name>}:state    hash: state, epoch, open period, openings, probe counts, consecutive failures, ...
    {<prefix>:<name>}:window   count window: a string of one byte per outcome (a ring); time window: a hash of
                               per-second buckets c<second>/f<second>/s<second> on the server's clock

Every change is made by one Lua script (:data:`_SYNC`), atomically: it applies a proposed transition (a local trip,
compare-and-set on the epoch; a manual one, unconditionally), adds the batched outcomes and judges them, handles the
probes (permits, outcomes, permits given back) and the open period, and returns the fleet's breaker. Times come from
the server's ``TIME``, so hosts' clocks never disagree (a script that reads ``TIME`` before writing needs Redis >= 5,
which replicates scripts by their effects). Keys expire ``ttl`` seconds after the last sync.

Batching and staleness. The hot path never talks to Redis: in CLOSED a call takes the local permit and its outcome is
recorded locally, as without a store. A background thread (one per store, the synchronous client; no event loop ever
waits on Redis) runs the script for each breaker every ``flush_interval`` seconds (0.1 by default), and at once when a
batch reaches ``flush_size`` outcomes (rate models) or failures (consecutive model), when this process trips, and
when a probe is wanted or has ended. So:

* a transition made by another process is seen here within ``flush_interval`` plus one round trip;
* outcomes reach the fleet's window within ``flush_interval`` (or ``flush_size`` outcomes) plus one round trip;
* hence the fleet opens on outcomes spread over processes at most ``flush_interval`` + a round trip after they
  happen, and every process stops calling at most ``2 x flush_interval`` + two round trips after them (0.2 s by
  default); a process that trips on its own outcomes stops at once and the others within ``flush_interval`` + two
  round trips.

HALF_OPEN across the fleet. Once the open period has passed, a caller asks the fleet for a probe permit; its own call
is rejected (``retry_after=None``) and the thread is woken. The script moves the fleet's breaker to HALF_OPEN and
hands out at most ``half_open_max_calls`` permits per HALF_OPEN period in total, to the processes that asked. A
permit unused for a sync interval, or whose call ended without an outcome, is given back. A process that dies holding
a permit cannot keep the fleet in HALF_OPEN: once all permits are out, the period ends after ``max_half_open_wait``
(the breaker's) or else ``probe_lease`` seconds (the store's), and the breaker goes back to OPEN.

Outage. When Redis cannot be reached, every breaker of the store goes on as a local breaker from its current state
(one warning on the ``stalwart`` logger; no call fails because of Redis). A sync round stops talking to a single
server at its first unanswered call (refused, reset, timed out): the remaining breakers go local at once, so a hung
server costs one ``socket_timeout`` per round, not one per breaker. A trip made meanwhile is proposed to the
fleet when Redis answers again (applied if the fleet did not move meanwhile, or has no state, e.g. after a restart);
otherwise the fleet's state is adopted (logged once). Outcomes counted during the outage are not sent. Every process
should configure a breaker alike.

Closing. :meth:`RedisCircuitStore.close` (or ``with``) stops the thread after a last sync; the breakers go on as
local breakers. The thread holds the store weakly and every attached breaker holds it: a store is garbage-collected,
even if never closed, with the last of its breakers, and then its thread ends and the client it owns (``from_url``)
is closed.

Fork. A store created before ``fork`` (gunicorn ``--preload``, a multiprocessing or prefork pool) works in the child
(the shared machinery of :class:`~stalwart.redis._common.SyncThread`): the fork waits for the store's lock and its
breakers' locks (held for an instant, never across I/O), so the child's copies are consistent and the locks free; in
the child the lock held through a round is new, each breaker drops what the parent had not sent yet (outcomes, probe
outcomes and demand, a proposed transition: the parent sends them, once) and the fleet's probe permits the parent
held (the parent's to use), and the store starts a thread of its own if it had one.

Lost state. Redis may lose a breaker's state (a restart without persistence, a failover to a replica that missed the
latest writes, eviction, ``DEL``). A process whose breaker is OPEN, HALF_OPEN or FORCED_OPEN sends a claim with every
sync (:class:`~stalwart._breaker_shared.Claim`: its state, the rest of its open period on its own clock; HALF_OPEN is
claimed as OPEN with 0 s left); the script restores it when the state it holds was rebuilt from nothing since the
claimer last heard from it (field ``rb``: no transition since the keys were created) or is older than the epoch the
claimer knew. Several claims give the most restrictive state in any order: FORCED_OPEN over OPEN over anything else,
among OPEN the latest end. A transition of the rebuilt breaker (HALF_OPEN on demand, a manual one) ends the merging.
A state created from nothing numbers its epochs from the server's time in microseconds (and above the epoch the
creating process knew), so that no process mistakes the new state for the one it knew by the same epoch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any, Self

import redis

from stalwart._breaker_link import BreakerLink
from stalwart._breaker_settings import CircuitState
from stalwart._breaker_shared import FleetView, SyncRequest
from stalwart._config import check_int, to_seconds, to_seconds_or_none, to_units
from stalwart._windows import CountWindow

from ._common import MAX_MS, REDIS_ERRORS, OutageLog, SyncThread, check_client, check_key_part, client_from_url

__all__ = ["RedisCircuitStore"]

logger = logging.getLogger("stalwart")

_SYNC = """
local skey, wkey = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A state created from nothing starts its epochs at the server's time in microseconds (exact in a double until the
-- year 2255) and above the epoch the syncing process knew: never an epoch a process knew another state by (that
-- would take more transitions than microseconds between the two creations).
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local known = tonumber(ARGV[13])
local model, size = tonumber(ARGV[1]), tonumber(ARGV[2])
local fail_threshold, success_threshold = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_probes, rate_threshold, judging = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local tracks_slow, slow_threshold = ARGV[8] == '1', tonumber(ARGV[9])
local wait_ms, next_open, ttl = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])

local raw = redis.call('HGETALL', skey)
local h = {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local function num(f) return tonumber(h[f] or '0') or 0 end
local fresh = h.ep == nil
local st, ep, rs, rt = h.st or 'closed', num('ep'), h.rs or 'initial', h.rt or ''
-- rb: the state was rebuilt from nothing and has made no transition since (claims of processes that knew the lost
-- state are merged into it)
local rb = num('rb')
if fresh then ep, rb = math.max(now_us, known + 1), 1 end
local ou, on, lo, hs = num('ou'), num('on'), num('lo'), num('hs')
local pr, pk, pf, ps = num('pr'), num('pk'), num('pf'), num('ps')
local cn, pc, pfl = num('cn'), num('pc'), num('pfl')
local ri, wc, wf, ws = num('ri'), num('wc'), num('wf'), num('ws')
local cfg, mismatch = h.cfg or ARGV[29], 0
if cfg ~= ARGV[29] then mismatch = 1 end

local function exceeded(calls, count, threshold)
  return calls > 0 and count * 100.0 >= threshold * calls
end

local function move(to, reason, rate, open_ms)
  ep, rb = ep + 1, 0
  st, rs, rt = to, reason, rate or ''
  pr, pk, pf, ps = 0, 0, 0, 0
  cn, pc, pfl = 0, 0, 0
  if to ~= 'open' and to ~= 'forced_open' then
    ri, wc, wf, ws = 0, 0, 0, 0
    if model ~= 0 then redis.call('DEL', wkey) end
  end
  if to == 'open' then
    on, lo, ou = on + 1, open_ms, now + open_ms
  else
    ou = 0
    if to == 'half_open' then hs = now elseif to == 'closed' then on, lo = 0, 0 end
  end
end

local function judge()
  if wc < judging then return end
  if exceeded(wc, wf, rate_threshold) then
    move('open', 'failure_rate', tostring(100.0 * wf / wc), next_open)
  elseif tracks_slow and exceeded(wc, ws, slow_threshold) then
    move('open', 'slow_call_rate', tostring(100.0 * ws / wc), next_open)
  end
end

local function tally(codes, sign)
  for i = 1, #codes do
    local b = string.byte(codes, i)
    if b % 2 == 1 then wf = wf + sign end
    if b >= 2 then ws = ws + sign end
  end
end

-- 1. a proposed transition
local applied = 0
if ARGV[24] ~= '' then
  local expected = ARGV[28]
  local manual_only = st == 'disabled' or st == 'metrics_only' or st == 'forced_open'
  if expected == '' or fresh or (tonumber(expected) == ep and not manual_only) then
    local rate = ARGV[26]
    if rate == '' then rate = nil end
    move(ARGV[24], ARGV[25], rate, tonumber(ARGV[27]))
    applied = 1
    if fresh and expected ~= '' then rb = 1 end  -- a trip, not a manual transition: other claims still merge
  end
end

-- 1b. a claim: this process's OPEN / HALF_OPEN (claimed as OPEN, 0 ms left) / FORCED_OPEN, restored if the state
-- here was rebuilt from nothing since the process last heard from it (rb) or is older than the epoch it knew (a
-- replica that missed the latest writes). The most restrictive wins: forced_open > open > any other state; among
-- open, the latest end. A transition made here to restore a claim gets an epoch above the one the claimer knew.
if applied == 0 and ARGV[30] ~= '' and known >= 0 and known ~= ep and (rb == 1 or known > ep) then
  local c_ms, c_on, c_lo = tonumber(ARGV[33]), tonumber(ARGV[34]), tonumber(ARGV[35])
  local c_rate = ARGV[32]
  if c_rate == '' then c_rate = nil end
  if ARGV[30] == 'forced_open' then
    if st ~= 'forced_open' then
      if known > ep then ep = math.max(known, now_us) end
      move('forced_open', 'manual')
    end
    on, lo = math.max(on, c_on), c_lo
  elseif st == 'open' and rb == 1 then
    if now + c_ms > ou then ou, lo, rs, rt = now + c_ms, c_lo, ARGV[31], ARGV[32] end
    on = math.max(on, c_on)
  elseif st ~= 'forced_open' then
    local was_open, ou_before, on_before, lo_before = st == 'open', ou, on, lo
    if known > ep then ep = math.max(known, now_us) end
    move('open', ARGV[31], c_rate, c_ms)
    on, lo = math.max(on_before, c_on), c_lo
    if was_open and ou_before > ou then ou, lo = ou_before, lo_before end
  end
  rb = 1
  applied = 1
end

-- 2. outcomes of CLOSED / METRICS_ONLY, judged in CLOSED
local same = tonumber(ARGV[13]) == ep
local counting = same and (st == 'closed' or st == 'metrics_only')
local ok, failed, slow = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
if model == 0 then
  if counting and ok + failed > 0 then
    pc, pfl = pc + ok + failed, pfl + failed
    if ok > 0 then cn = tonumber(ARGV[17]) else cn = cn + failed end
    if st == 'closed' and cn >= fail_threshold then move('open', 'consecutive_failures', nil, next_open) end
  end
elseif model == 1 then
  local codes = ARGV[18]
  local k = #codes
  if counting and k > 0 then
    if k >= size then
      codes = string.sub(codes, k - size + 1)
      redis.call('SET', wkey, codes)
      ri, wc, wf, ws = 0, size, 0, 0
      tally(codes, 1)
    else
      local evict = wc + k - size
      if evict > 0 then
        local start = (ri + k - evict) % size
        local first = math.min(evict, size - start)
        local old = redis.call('GETRANGE', wkey, start, start + first - 1)
        if first < evict then old = old .. redis.call('GETRANGE', wkey, 0, evict - first - 1) end
        tally(old, -1)
      end
      local first = math.min(k, size - ri)
      redis.call('SETRANGE', wkey, ri, string.sub(codes, 1, first))
      if first < k then redis.call('SETRANGE', wkey, 0, string.sub(codes, first + 1)) end
      tally(codes, 1)
      wc, ri = math.min(size, wc + k), (ri + k) % size
      if wf < 0 then wf = 0 end
      if ws < 0 then ws = 0 end
    end
    if st == 'closed' then judge() end
  end
else
  local second = math.floor(now / 1000)
  if counting and ok + failed > 0 then
    redis.call('HINCRBY', wkey, 'c' .. second, ok + failed)
    if failed > 0 then redis.call('HINCRBY', wkey, 'f' .. second, failed) end
    if slow > 0 then redis.call('HINCRBY', wkey, 's' .. second, slow) end
  end
  local fields = redis.call('HGETALL', wkey)
  local stale = {}
  wc, wf, ws = 0, 0, 0
  for i = 1, #fields, 2 do
    local bucket = tonumber(string.sub(fields[i], 2))
    if bucket == nil or bucket <= second - size or bucket > second then
      stale[#stale + 1] = fields[i]
    else
      local kind, v = string.sub(fields[i], 1, 1), tonumber(fields[i + 1])
      if kind == 'c' then wc = wc + v elseif kind == 'f' then wf = wf + v else ws = ws + v end
    end
  end
  if #stale > 0 then redis.call('HDEL', wkey, unpack(stale)) end
  if st == 'closed' then judge() end
end

-- 3. probes of the current HALF_OPEN period
if same and st == 'half_open' then
  pr = math.max(0, pr - tonumber(ARGV[22]))
  pk, pf, ps = pk + tonumber(ARGV[19]), pf + tonumber(ARGV[20]), ps + tonumber(ARGV[21])
  if model == 0 then
    if pf > 0 then
      move('open', 'probes_failed', nil, next_open)
    elseif pk >= success_threshold then
      move('closed', 'probes_succeeded')
    end
  elseif pk + pf > 0 then
    local remaining = max_probes - pk - pf
    if exceeded(max_probes, pf, rate_threshold) then
      move('open', 'failure_rate', tostring(100.0 * pf / max_probes), next_open)
    elseif tracks_slow and exceeded(max_probes, ps, slow_threshold) then
      move('open', 'slow_call_rate', tostring(100.0 * ps / max_probes), next_open)
    elseif not exceeded(max_probes, pf + remaining, rate_threshold)
        and not (tracks_slow and exceeded(max_probes, ps + remaining, slow_threshold)) then
      move('closed', 'probes_succeeded')
    end
  end
end
if st == 'half_open' and pr >= max_probes and now - hs >= wait_ms then
  move('open', 'max_half_open_wait', nil, next_open)
end

-- 4. the open period and probe permits
local demand, granted = tonumber(ARGV[23]), 0
if st == 'open' and demand > 0 and now >= ou then move('half_open', 'reset_timeout') end
if st == 'half_open' and demand > 0 and pr < max_probes then
  granted = math.min(demand, max_probes - pr)
  pr = pr + granted
end

redis.call('HSET', skey, 'st', st, 'ep', ep, 'rs', rs, 'rt', rt, 'ou', ou, 'on', on, 'lo', lo, 'hs', hs,
  'pr', pr, 'pk', pk, 'pf', pf, 'ps', ps, 'cn', cn, 'pc', pc, 'pfl', pfl, 'ri', ri, 'wc', wc, 'wf', wf, 'ws', ws,
  'cfg', cfg, 'rb', rb)
redis.call('PEXPIRE', skey, ttl)
if model ~= 0 and redis.call('EXISTS', wkey) == 1 then redis.call('PEXPIRE', wkey, ttl) end

local calls, failures, slows = wc, wf, ws
if st == 'half_open' then
  calls, failures, slows = pk + pf, pf, ps
elseif model == 0 then
  calls, failures, slows = pc, pfl, 0
end
local remaining = 0
if st == 'open' then remaining = math.max(0, ou - now) end
return {st, ep, rs, rt, remaining, on, lo, granted, applied, calls, failures, slows, cn, pr, mismatch}
"""


# The errors meaning the server did not answer at all (refused, reset, timed out), as opposed to an answer that was
# an error for one breaker's keys (a ResponseError, a malformed reply).
_UNREACHABLE: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)


def _ms(seconds: float) -> int:
    """A breaker's duration in whole milliseconds for the script, at most MAX_MS.

    The breaker's own settings (``reset_timeout``, ``max_half_open_wait``, the open periods they lead to) may be as
    long as any float: past MAX_MS (about 142,700 years) a period means "forever" either way, while its exact count
    would overflow here (``OverflowError`` from ``round(inf)``) or reach Redis as a number it refuses.
    """
    if seconds >= MAX_MS / 1000:  # also infinity
        return MAX_MS
    return max(0, round(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _view(reply: Any) -> tuple[FleetView, bool]:
    """The script's reply as a :class:`FleetView`, and whether the fleet's settings differ from ours."""
    rate = _text(reply[3])
    view = FleetView(
        state=CircuitState(_text(reply[0])),
        epoch=int(reply[1]),
        reason=_text(reply[2]),
        rate=float(rate) if rate else None,
        open_remaining=int(reply[4]) / 1000.0,
        openings=int(reply[5]),
        last_open_duration=int(reply[6]) / 1000.0,
        granted=int(reply[7]),
        applied=bool(int(reply[8])),
        calls=int(reply[9]),
        failures=int(reply[10]),
        slow=int(reply[11]),
        consecutive=int(reply[12]),
        probes=int(reply[13]),
    )
    return view, bool(int(reply[14]))


class _Attached:
    """One breaker attached to the store: its link, keys and the script arguments fixed by its settings."""

    __slots__ = ("keys", "link", "static", "warned")

    def __init__(self, link: BreakerLink, prefix: str, probe_lease: float) -> None:
        settings = link.settings
        window = settings.window
        if window is None:
            model, size = 0, 0
        elif isinstance(window, CountWindow):
            model, size = 1, window.size
        else:
            model, size = 2, int(window.seconds)
        wait = settings.max_half_open_wait if settings.max_half_open_wait is not None else probe_lease
        slow = settings.slow_call_duration
        self.link = link
        tag = f"{{{prefix}:{link.name}}}"
        self.keys = [f"{tag}:state", f"{tag}:window"]
        self.static: list[Any] = [
            model,
            size,
            settings.failure_threshold,
            settings.success_threshold,
            settings.half_open_max_calls,
            repr(settings.failure_rate_threshold),
            settings.judging_calls,
            0 if slow is None else 1,
            repr(settings.slow_call_rate_threshold),
            _ms(wait),
        ]
        self.warned = False


class RedisCircuitStore:
    """Circuit-breaker state shared by every process using the same Redis and ``prefix``.

    Pass it as ``store=`` to :class:`~stalwart.CircuitBreaker` (or ``registry.breaker(name, store=...)``); one store
    serves any number of breakers with one background thread. The module docstring describes the layout, the
    batching and its staleness bound, HALF_OPEN across the fleet, and the fallback to local state.

    Args:
        client: a synchronous ``redis.Redis`` (or ``redis.RedisCluster``) client; give it socket timeouts (the
            background thread waits on it, never a call). :meth:`from_url` builds one.
        prefix: the key prefix; no ``{`` or ``}``; default ``"stalwart:breaker"``. Breaker names must not contain
            braces either.
        flush_interval: seconds between syncs (> 0, default ``0.1``): how stale a process's view of the fleet
            may be; ``None`` starts no thread: call :meth:`sync` yourself (tests do).
        flush_size: outcomes (rate models) or failures (consecutive model) after which a breaker's batch is sent at
            once (``int`` >= 1, default 1000).
        probe_lease: seconds after which a HALF_OPEN period whose probe permits are all out ends (back to OPEN),
            for breakers without ``max_half_open_wait`` (> 0, default ``60.0``): a process that dies holding a
            permit delays the fleet's recovery by at most this much. At most 2**52 ms.
        ttl: seconds after the last sync at which a breaker's keys expire (> 0, default one day; at most 2**52 ms,
            about 142,700 years).
        close_client: whether :meth:`close` closes ``client`` too (``from_url`` sets it).

    Raises:
        TypeError, ValueError: an invalid parameter, naming it.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        prefix: str = "stalwart:breaker",
        flush_interval: float | None = 0.1,
        flush_size: int = 1000,
        probe_lease: float = 60.0,
        ttl: float = 86400.0,
        close_client: bool = False,
    ) -> None:
        check_client(client)
        self.prefix = check_key_part(prefix, "prefix")
        self._interval = to_seconds_or_none(flush_interval, "flush_interval", allow_zero=False)
        self.flush_size = check_int(flush_size, "flush_size", minimum=1)
        to_units(probe_lease, "probe_lease", per_second=1000, maximum=MAX_MS)  # a count the scripts can hold
        to_units(ttl, "ttl", per_second=1000, maximum=MAX_MS)
        self._probe_lease = to_seconds(probe_lease, "probe_lease", allow_zero=False)
        self._ttl = to_seconds(ttl, "ttl", allow_zero=False)
        self._client = client
        # One server behind the client: when it does not answer, no breaker of the round can reach it. (A cluster
        # client spreads the breakers over nodes: one node down says nothing of the others.)
        self._single_server = not isinstance(client, redis.RedisCluster)
        self._close_client = close_client
        self._script = client.register_script(_SYNC)
        self._attached: list[_Attached] = []
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._outage = OutageLog(
            f"circuit breakers (store prefix {prefix!r})",
            "each breaker decides locally until it can",
            "sharing the fleet's breakers",
        )
        self._closed = False
        self._thread = SyncThread(
            f"stalwart-breakers-{prefix}", self._interval, self, close=client.close if close_client else None
        )

    def _fork_locks(self) -> Iterator[threading.Lock]:
        """The locks held across ``fork`` (see :class:`~stalwart.redis._common.SyncThread`): the store's, then (the
        breakers attached now that it is held) each breaker's. Nothing takes the store's lock under a breaker's."""
        yield self._lock
        for entry in self._attached:
            yield entry.link.lock

    def _after_fork(self) -> None:
        """In a forked child (only this thread runs; the locks of :meth:`_fork_locks` free): a new round lock, and
        what the parent had not sent dropped from every breaker (the parent sends it)."""
        self._sync_lock = threading.Lock()
        self._outage.after_fork()
        for entry in self._attached:
            entry.link.forget_unsent()

    @classmethod
    def from_url(cls, url: str, *, socket_timeout: float = 1.0, **kwargs: Any) -> RedisCircuitStore:
        """A store with its own client for ``url`` (``redis://``, ``rediss://``, ``unix://``), closed by :meth:`close`.

        Args:
            url: the server URL.
            socket_timeout: seconds for connecting and for each command (default ``1.0``); commands are not retried
                by the client (the next sync is the retry).
            **kwargs: the constructor's keyword arguments.

        Raises:
            ValueError: ``url`` has no supported scheme.
            TypeError, ValueError: an invalid parameter, as for the constructor.
        """
        return cls(client_from_url(url, socket_timeout), close_client=True, **kwargs)

    # ------------------------------------------------------------------ the CircuitStore protocol
    def attach(self, link: BreakerLink) -> None:
        """Keep ``link``'s breaker in step with the fleet from now on (its first sync happens in the background).

        Raises:
            ValueError: the breaker's name contains ``{`` or ``}``.
            RuntimeError: the store is closed.
        """
        check_key_part(link.name, "name")
        if self._closed:
            raise RuntimeError("this RedisCircuitStore is closed")
        entry = _Attached(link, self.prefix, self._probe_lease)
        link.set_wake(self._wake)
        with self._lock:
            self._attached.append(entry)
            self._thread.start()  # once: under the lock, breakers may be attached from several threads
        self._wake()  # the first sync, in the background

    def _wake(self) -> None:
        self._thread.wake()

    def keys(self, name: str) -> tuple[str, str]:
        """The keys of the breaker called ``name``: ``(state hash, window)``."""
        tag = f"{{{self.prefix}:{name}}}"
        return f"{tag}:state", f"{tag}:window"

    # ------------------------------------------------------------------ syncing
    def sync(self) -> bool:
        """Sync every attached breaker now (one round trip each); return whether Redis answered for all.

        When a single server does not answer (refused, reset, timed out), the breakers not yet synced in this round
        go local without trying it (one ``socket_timeout`` per round, not one per breaker); with a cluster client,
        or an error answer for one breaker's keys, the others are still tried.

        The background thread calls it every ``flush_interval``; call it yourself with ``flush_interval=None``.
        Never raises for a Redis problem (the breakers fall back to local state; logged once per outage).
        """
        with self._sync_lock:
            with self._lock:
                attached = list(self._attached)
            answered = True
            unreachable = False
            for entry in attached:
                if unreachable:
                    # The server did not answer this round: the other breakers go local at once instead of each
                    # waiting out its own socket timeout (N breakers x timeout per round against a hung or
                    # blackholed server, while a breaker further down the list, its open period over, rejected
                    # every call waiting for a fleet probe permit).
                    entry.link.fail(entry.link.begin())
                    continue
                failure = self._sync_one(entry)
                if failure is not None:
                    answered = False
                    unreachable = self._single_server and isinstance(failure, _UNREACHABLE)
            return answered

    def _sync_one(self, entry: _Attached) -> BaseException | None:
        """Sync one breaker; the error when Redis did not answer, else ``None``."""
        link = entry.link
        request = link.begin()
        try:
            reply = self._script(keys=entry.keys, args=self._args(entry, request))
            view, mismatch = _view(reply)
        except REDIS_ERRORS as exc:
            link.fail(request)
            self._outage.failed(exc)
            return exc
        self._outage.answered()
        if mismatch and not entry.warned:
            entry.warned = True
            logger.warning(
                "stalwart: circuit breaker %r is configured differently in another process of the fleet; "
                "the processes judge its shared state with their own settings",
                link.name,
            )
        link.end(view)
        return None

    def _args(self, entry: _Attached, request: SyncRequest) -> list[Any]:
        proposal = request.proposal
        if proposal is None:
            proposed: list[Any] = ["", "", "", 0, ""]
        else:
            proposed = [
                proposal.state.value,
                proposal.reason,
                "" if proposal.rate is None else repr(proposal.rate),
                _ms(proposal.open_duration),
                "" if proposal.expected_epoch is None else proposal.expected_epoch,
            ]
        claim = request.claim
        if claim is None:
            claimed: list[Any] = ["", "", "", 0, 0, 0]
        else:
            claimed = [
                claim.state.value,
                claim.reason,
                "" if claim.rate is None else repr(claim.rate),
                _ms(claim.open_remaining),
                claim.openings,
                _ms(claim.last_open_duration),
            ]
        return [
            *entry.static,
            _ms(request.next_open),
            _ms(self._ttl),
            request.epoch,
            request.ok,
            request.failed,
            request.slow,
            request.trailing,
            request.codes,
            request.probe_ok,
            request.probe_failed,
            request.probe_slow,
            request.returned,
            request.demand,
            *proposed,
            "|".join(str(value) for value in entry.static),
            *claimed,
        ]

    # ------------------------------------------------------------------ lifecycle and introspection
    @property
    def connected(self) -> bool:
        """Whether the last sync of every attached breaker reached Redis (``False`` before the first one)."""
        with self._lock:
            attached = list(self._attached)
        return bool(attached) and all(entry.link.connected for entry in attached)

    def close(self) -> None:
        """Stop the thread after a last sync, and close the client if the store owns it. Idempotent; blocking.

        The breakers keep working, as local breakers. A store never closed is cleaned up when it is garbage-collected
        (with the last of its breakers), without the last sync.
        """
        if self._closed:
            return
        self._closed = True
        self._thread.stop()  # a last sync
        with self._lock:
            attached, self._attached = self._attached, []
        for entry in attached:
            entry.link.disconnect()
        if self._close_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisCircuitStore(prefix={self.prefix!r}, flush_interval={self._interval!r})"
