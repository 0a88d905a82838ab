# Store engineer's file: see git log before rewriting.
"""``RedisStore``: idempotency records in Redis, one Lua script per transition (spec §2.15, §2.16.3).

Layout. Every key of one store lives under one hash tag, so each script touches keys of a single slot and the store
runs unchanged on Redis Cluster (``shards`` spreads the records over several tags, below)::

    {<prefix>}:r:<record_id>   a hash per record (fields below); its TTL is the record's expires_at
    {<prefix>}:fence           the fence counter (INCR), never expires, so fences grow across purges
    {<prefix>}:exp             sorted set record_id -> expires_at, so purge() can count what it removes
    {<prefix>}:abandoned       sorted set record_id -> abandon time, for list_abandoned()

Transitions. claim, heartbeat, complete, release and abandon are each one script: it reads the record, decides on
the store clock (``TIME`` inside the script, microseconds) exactly as :mod:`stalwart.idempotency._record` does, and
writes the record together with its TTL (``PEXPIREAT`` of ``expires_at``, rounded up to the millisecond) in the same
atomic command. No GET-then-SET, no side locks. Every write after the claim compares ``owner_token`` and ``fence``.

Fences. ``INCR`` on the tag's counter inside the claim script; with ``shards=n`` the fence is ``counter * n +
shard``, which strictly increases for every record (a record always maps to the same shard) and is unique in the
store, but is ordered across records only within a shard. With the default ``shards=1`` the counter is store-wide.
``shards`` must never change for a prefix: records would move to other keys and be seen as absent.

Server settings (checked at start-up by ``IdempotencyMiddleware`` on the ASGI lifespan, else before the first
operation, or by :meth:`RedisStore.check_server`): ``maxmemory-policy noeviction`` (any
eviction policy may drop a live in-progress record, and then the request runs twice) and AOF with ``appendfsync
always`` (otherwise an acknowledged claim can be lost in a crash). Problems are logged on the ``stalwart`` logger;
with ``strict_server_checks=True`` they raise :class:`RedisServerCheckError`. Redis expiry follows the server's wall
clock: an NTP step moves every lease and TTL. G1 does not survive a failover that loses acknowledged writes
(asynchronous replication); use PostgreSQL where that matters.

Replication (``wait_replicas``, spec §2.16.3). Optionally the claim and the completion send ``WAIT n timeout`` right
after their script, in the same round trip (a non-transactional pipeline on one connection, so ``WAIT`` covers the
script's writes). This narrows, but does not close, the failover window: replicas acknowledge receipt, not a
durable write, and a failover may still promote a replica that missed the write. When fewer replicas acknowledge
within ``wait_timeout`` (a "shortfall"): a claim that took the key is released and raises StoreUnavailable (503, the
handler does not run) with ``wait_shortfall="fail"`` (the default), or goes ahead with ``"proceed"``; a completion
always counts as done (the handler has run and its response is the truth; failing it would not undo anything). Each
shortfall of a claim that took the key, or of a successful completion, increments ``replication_shortfalls`` and is
logged as a warning (at most one line per 10 s). Claims that took nothing (replays, 409, 422) ignore the reply.

Requires Redis 5 or later (scripts replicated by their effects, so ``TIME`` may precede writes).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from stalwart._config import check_int, to_seconds, to_units
from stalwart._exceptions import StoreUnavailable
from stalwart.idempotency._record import (
    SCHEMA_VERSION,
    ClaimResult,
    Outcome,
    Record,
    RecordDecodeError,
    State,
    StoredResponse,
    decode_headers,
    encode_headers,
)

from . import _redis_lua as lua
from ._redis_checks import RedisServerCheckError, read_settings, server_problems

__all__ = ["RedisServerCheckError", "RedisStore", "server_problems"]

logger = logging.getLogger("stalwart")

_US = 1_000_000  # the scripts keep times in integer microseconds
# The most units a duration setting may count: index_grace in microseconds (the scripts' Lua numbers hold whole
# numbers exactly up to 2**53), wait_timeout in milliseconds (well inside WAIT's 64-bit range).
_EXACT = 2**53
_SHORTFALL_LOG_EVERY = 10.0  # seconds between two warnings about replication shortfalls
_monotonic = time.monotonic  # the clock of that rate limit (a module attribute, so tests can drive it)
WAIT_SHORTFALL_POLICIES = ("fail", "proceed")
_STATES = {s.value.encode(): s for s in State}  # stored bytes -> member (KeyError: undecodable)
_OUTCOMES = {o.value.encode(): o for o in Outcome}

# -- the store ------------------------------------------------------------------------------------------------------


class RedisStore:
    """An :class:`~stalwart.idempotency.IdempotencyStore` in Redis (redis-py asyncio; hiredis used when installed).

    Build it from a URL (:meth:`from_url`, the store owns and closes that client) or from an existing
    ``redis.asyncio.Redis`` / ``RedisCluster`` created with ``decode_responses=False`` (the caller keeps ownership).
    Every Redis error, timeout or refused connection raises :class:`~stalwart.StoreUnavailable` with the redis-py
    exception as ``__cause__``; give the client socket timeouts (``from_url`` sets 2 s) so a dead server cannot hang
    a request. Commands are not retried by ``from_url`` clients: the middleware retries, and a re-sent ``complete``
    whose first reply was lost reports False although the record holds the response.

    Args:
        client: the redis-py asyncio client.
        prefix: key prefix, used as the hash tag (default ``"stalwart:idem"``); no ``{`` or ``}``.
        shards: number of hash tags the records are spread over (default 1, one slot); fixed for a prefix.
        strict_server_checks: raise :class:`RedisServerCheckError` instead of logging when the server's settings
            break the guarantees (default False).
        check_server_on_first_use: run :meth:`check_server` before the first operation (default True).
        index_grace: seconds after its expiry an entry of the purge index is dropped without counting, so the index
            stays bounded when :meth:`purge` never runs (default 3600.0; at most 2**53 us, about 285 years).
        wait_replicas: replicas that must acknowledge a claim and a completion (Redis ``WAIT``, sent in the same
            round trip as the script); default 0: no ``WAIT``. Needs a ``redis.asyncio.Redis`` client (not
            ``RedisCluster``). Narrows, does not close, the failover window (see the module documentation).
        wait_timeout: seconds ``WAIT`` may block for the acknowledgements (default 0.1; > 0, rounded up to the
            millisecond, at most 2**53 ms). Redis ends a blocked ``WAIT`` on its ``hz`` tick, so a shortfall takes
            up to one tick more (0.1 s at the default ``hz 10``). Keep it well below the client's socket timeout and
            the middleware's ``store_timeout``: while replicas are missing, every claim (replays too: the ``WAIT``
            is sent before the script's outcome is known) and completion takes this long.
        wait_shortfall: what a claim that took the key does when fewer than ``wait_replicas`` replicas acknowledged
            it: ``"fail"`` (default) releases it and raises StoreUnavailable (503, the handler does not run);
            ``"proceed"`` keeps it (the guarantee is then that of a store without ``WAIT``). Completions always
            proceed. Either way the shortfall is counted in ``replication_shortfalls`` and logged.
        close_client: close the client in :meth:`aclose` (default False; ``from_url`` passes True).

    Attributes:
        replication_shortfalls: claims that took a key and completions that were acknowledged by fewer than
            ``wait_replicas`` replicas (``int``, since construction; reported by the middleware's ``statistics()``).

    Raises:
        ValueError: an invalid ``prefix``, ``shards``, ``index_grace``, ``wait_replicas``, ``wait_timeout`` or
            ``wait_shortfall``, ``wait_replicas`` with a cluster client, or a client that decodes responses.
        TypeError: ``shards``, ``wait_replicas`` or a duration of the wrong type.
    """

    requires_secret = True
    """This store keeps no scope secret: ``IdempotencyMiddleware`` refuses to start (ValueError) without ``secret``."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "stalwart:idem",
        shards: int = 1,
        strict_server_checks: bool = False,
        check_server_on_first_use: bool = True,
        index_grace: float = 3600.0,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
        wait_shortfall: str = "fail",
        close_client: bool = False,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be non-empty and contain no '{{' or '}}', got {prefix!r}")
        encoder = client.get_encoder()
        if encoder.decode_responses:
            raise ValueError("client must be created with decode_responses=False (records hold raw bytes)")
        self.client = client
        self.prefix = prefix
        self.shards = check_int(shards, "shards", minimum=1)
        self.strict_server_checks = strict_server_checks
        self._grace_us = to_units(index_grace, "index_grace", per_second=_US, maximum=_EXACT, allow_zero=True)
        self.wait_replicas = check_int(wait_replicas, "wait_replicas", minimum=0)
        # WAIT's unit, rounded up: 0 would block forever
        self._wait_ms = to_units(wait_timeout, "wait_timeout", per_second=1000, maximum=_EXACT)
        self.wait_timeout = to_seconds(wait_timeout, "wait_timeout", allow_zero=False)
        if wait_shortfall not in WAIT_SHORTFALL_POLICIES:
            raise ValueError(f"wait_shortfall must be 'fail' or 'proceed', got {wait_shortfall!r}")
        self.wait_shortfall = wait_shortfall
        if self.wait_replicas and not isinstance(client, Redis):
            # WAIT counts the acknowledgements of its own connection's writes; a cluster pipeline would send it to
            # another connection than the script's.
            raise ValueError("wait_replicas needs a redis.asyncio.Redis client (not RedisCluster)")
        self.replication_shortfalls = 0
        self._shortfall_logged_at = -math.inf
        self._close_client = close_client
        self._tags = [f"{{{prefix}}}" if self.shards == 1 else f"{{{prefix}:{i}}}" for i in range(self.shards)]
        self._checked = not check_server_on_first_use
        self._check_error: RedisServerCheckError | None = None
        self._check_lock = asyncio.Lock()
        reg = client.register_script
        self._claim, self._heartbeat, self._complete = reg(lua.CLAIM), reg(lua.HEARTBEAT), reg(lua.COMPLETE)
        self._release, self._abandon, self._get = reg(lua.RELEASE), reg(lua.ABANDON), reg(lua.GET)
        self._purge_one, self._abandoned_one = reg(lua.PURGE_ONE), reg(lua.ABANDONED_ONE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "stalwart:idem",
        shards: int = 1,
        strict_server_checks: bool = False,
        check_server_on_first_use: bool = True,
        index_grace: float = 3600.0,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
        wait_shortfall: str = "fail",
        socket_timeout: float | None = 2.0,
        **client_kwargs: Any,
    ) -> RedisStore:
        """A store with its own client for ``url`` (``redis://``, ``rediss://`` or ``unix://``).

        Args:
            url: the server URL.
            prefix, shards, strict_server_checks, check_server_on_first_use, index_grace, wait_replicas,
                wait_timeout, wait_shortfall: as for the constructor.
            socket_timeout: seconds for connecting and for each command (default 2.0; ``None``: no limit, which
                leaves a stalled server to the middleware's ``store_timeout``).
            **client_kwargs: passed to ``redis.asyncio.Redis.from_url`` (``decode_responses`` is forced off;
                ``retry`` defaults to no retries).

        Raises:
            ValueError: as for the constructor, or ``wait_timeout`` not below ``socket_timeout`` while
                ``wait_replicas`` is set (the socket would time out before ``WAIT`` answers).
        """
        if socket_timeout is not None:
            socket_timeout = to_seconds(socket_timeout, "socket_timeout", allow_zero=False)
        wait = to_seconds(wait_timeout, "wait_timeout", allow_zero=False)
        if wait_replicas and socket_timeout is not None and wait >= socket_timeout:
            raise ValueError(f"wait_timeout ({wait_timeout!r} s) must be below socket_timeout ({socket_timeout!r} s)")
        client_kwargs.setdefault("socket_connect_timeout", socket_timeout)
        client_kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        client_kwargs["decode_responses"] = False
        client = Redis.from_url(url, socket_timeout=socket_timeout, **client_kwargs)
        return cls(
            client,
            prefix=prefix,
            shards=shards,
            strict_server_checks=strict_server_checks,
            check_server_on_first_use=check_server_on_first_use,
            index_grace=index_grace,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            wait_shortfall=wait_shortfall,
            close_client=True,
        )

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _tag(self, record_id: str) -> tuple[str, int]:
        if self.shards == 1:
            return self._tags[0], 0
        shard = zlib.crc32(record_id.encode()) % self.shards
        return self._tags[shard], shard

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        # EVALSHA straight on the client (redis-py's Script.__call__ adds an import, tuple copies and a coroutine
        # per call); a server that lost the script (restart, SCRIPT FLUSH) gets it loaded again, once.
        if not self._checked:
            await self._first_use()
        client: Any = self.client
        try:
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                script.sha = await client.script_load(script.script)
                return await client.evalsha(script.sha, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis store failed: {exc}") from exc

    async def _run_waited(self, script: Any, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        """The script and ``WAIT wait_replicas wait_timeout`` in one round trip on one connection.

        Returns the script's reply and the number of replicas that acknowledged the connection's writes.
        """
        if not self._checked:
            await self._first_use()
        try:
            try:
                return await self._send_waited(script, keys, args)
            except NoScriptError:
                script.sha = await self.client.script_load(script.script)
                return await self._send_waited(script, keys, args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis store failed: {exc}") from exc

    async def _send_waited(self, script: Any, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        # EVALSHA itself, not the Script object: a pipeline holding Script objects first sends SCRIPT EXISTS.
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.wait(self.wait_replicas, self._wait_ms)
        reply, acknowledged = await pipe.execute()
        return reply, int(acknowledged)

    def _shortfall(self, what: str, record_id: str, acknowledged: int) -> None:
        self.replication_shortfalls += 1
        now = _monotonic()
        if now - self._shortfall_logged_at >= _SHORTFALL_LOG_EVERY:
            self._shortfall_logged_at = now
            logger.warning(
                "RedisStore %s: %s of %s… acknowledged by %d of %d replicas within %.3f s (%d shortfalls so far); "
                "a failover now may lose it",
                self,
                what,
                record_id[:12],
                acknowledged,
                self.wait_replicas,
                self.wait_timeout,
                self.replication_shortfalls,
            )

    async def _first_use(self) -> None:
        try:
            async with self._check_lock:
                if self._check_error is not None:
                    raise self._check_error
                if not self._checked:
                    await self.check_server()
        except StoreUnavailable as exc:
            # The operation's own command was never sent: IdempotencyMiddleware need not give a claim back.
            exc.not_applied = True  # type: ignore[attr-defined]
            raise

    async def check_server(self) -> list[str]:
        """Check the server's ``maxmemory-policy`` and persistence settings (spec §2.16.3).

        Each problem is logged as a warning on the ``stalwart`` logger (an error with ``strict_server_checks``).
        Runs once automatically before the first operation unless disabled; call it again to re-check (a strict
        failure is remembered and raised by every operation until a re-check passes).

        Returns:
            The problems found (see :func:`server_problems`); empty when the server keeps every guarantee.

        Raises:
            RedisServerCheckError: problems were found and ``strict_server_checks`` is True.
            StoreUnavailable: the server could not be reached.
        """
        try:
            settings = await read_settings(self.client)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis store failed: {exc}") from exc
        problems = server_problems(settings)
        for problem in problems:
            logger.log(
                logging.ERROR if self.strict_server_checks else logging.WARNING, "RedisStore %s: %s", self, problem
            )
        if problems and self.strict_server_checks:
            self._check_error = RedisServerCheckError(problems)
            self._checked = False  # every operation goes through _first_use, which raises the remembered error
            raise self._check_error
        self._check_error = None
        self._checked = True
        return problems

    # -- transitions ----------------------------------------------------------------------------------------------

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
        """See :meth:`IdempotencyStore.claim` (one script: insert, own, abandon or reclaim, on ``TIME``)."""
        tag, shard = self._tag(record_id)
        keys = [f"{tag}:r:{record_id}", f"{tag}:fence", f"{tag}:exp", f"{tag}:abandoned"]
        args = [
            record_id,
            fingerprint,
            fp_version,
            owner_token,
            _to_us(lease_ttl),
            _to_us(retention),
            1 if reclaim else 0,
            self.shards,
            shard,
            self._grace_us,
        ]
        if not self.wait_replicas:
            reply = await self._run(self._claim, keys, args)
            return ClaimResult(bool(reply[0]), _decode(record_id, reply[2]), reply[1] / _US)
        reply, acknowledged = await self._run_waited(self._claim, keys, args)
        result = ClaimResult(bool(reply[0]), _decode(record_id, reply[2]), reply[1] / _US)
        if result.claimed and acknowledged < self.wait_replicas:
            self._shortfall("claim", record_id, acknowledged)
            if self.wait_shortfall == "fail":
                # Give the key back before failing, so a retry claims it afresh (and waits for that write): a retry
                # finding its own claim writes nothing, and its WAIT would then cover other writes.
                try:
                    await self.release(record_id, owner_token=owner_token, fence=result.record.fence)
                except StoreUnavailable:
                    logger.warning("RedisStore %s: releasing the unreplicated claim %s… failed", self, record_id[:12])
                raise StoreUnavailable(
                    f"claim of {record_id[:12]}… acknowledged by {acknowledged} of {self.wait_replicas} replicas"
                )
        return result

    async def heartbeat(
        self, record_id: str, *, owner_token: str, fence: int, lease_ttl: float, retention: float
    ) -> bool:
        """See :meth:`IdempotencyStore.heartbeat`."""
        tag, _ = self._tag(record_id)
        keys = [f"{tag}:r:{record_id}", f"{tag}:exp"]
        args = [record_id, owner_token, fence, _to_us(lease_ttl), _to_us(retention)]
        return bool(await self._run(self._heartbeat, keys, args))

    async def complete(
        self, record_id: str, *, owner_token: str, fence: int, response: StoredResponse, retention: float
    ) -> bool:
        """See :meth:`IdempotencyStore.complete`."""
        tag, _ = self._tag(record_id)
        keys = [f"{tag}:r:{record_id}", f"{tag}:exp", f"{tag}:abandoned"]
        args = [
            record_id,
            owner_token,
            fence,
            _to_us(retention),
            response.outcome.value,
            response.status,
            encode_headers(response.headers),
            b"" if response.body_omitted else response.body,
            1 if response.body_omitted else 0,
        ]
        if not self.wait_replicas:
            return bool(await self._run(self._complete, keys, args))
        reply, acknowledged = await self._run_waited(self._complete, keys, args)
        done = bool(reply)
        if done and acknowledged < self.wait_replicas:
            self._shortfall("completion", record_id, acknowledged)  # done all the same: the response is the truth
        return done

    async def release(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """See :meth:`IdempotencyStore.release`."""
        tag, _ = self._tag(record_id)
        keys = [f"{tag}:r:{record_id}", f"{tag}:exp", f"{tag}:abandoned"]
        return bool(await self._run(self._release, keys, [record_id, owner_token, fence]))

    async def abandon(self, record_id: str, *, owner_token: str, fence: int) -> bool:
        """See :meth:`IdempotencyStore.abandon`."""
        tag, _ = self._tag(record_id)
        keys = [f"{tag}:r:{record_id}", f"{tag}:abandoned"]
        return bool(await self._run(self._abandon, keys, [record_id, owner_token, fence]))

    # -- reads and maintenance ------------------------------------------------------------------------------------

    async def get(self, record_id: str) -> Record | None:
        """See :meth:`IdempotencyStore.get`."""
        tag, _ = self._tag(record_id)
        reply = await self._run(self._get, [f"{tag}:r:{record_id}"], [])
        return _decode(record_id, reply[1]) if reply[1] else None

    async def now(self) -> float:
        """The server's clock (``TIME``), epoch seconds."""
        if not self._checked:
            await self._first_use()
        try:
            seconds, micros = await self.client.time()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis store failed: {exc}") from exc
        return int(seconds) + int(micros) / _US

    async def purge(self, *, limit: int = 1000) -> int:
        """Remove up to ``limit`` records past their retention and their index entries (spec §2.15).

        Redis's own expiry deletes the record keys (their TTL is ``expires_at``); purge also drops them from the
        purge and abandoned indexes and counts each expired record once, whoever deleted its key. A live record is
        never touched: each candidate is re-checked inside a script on the store clock.
        """
        now_us = round(await self.now() * _US)
        purged = 0
        for tag in self._tags:
            while purged < limit:
                ids = await self._ids(self.client.zrangebyscore(f"{tag}:exp", "-inf", now_us, 0, limit - purged))
                if not ids:
                    break
                calls = [([f"{tag}:r:{rid.decode()}", f"{tag}:exp", f"{tag}:abandoned"], [rid]) for rid in ids]
                purged += sum(int(x) for x in await self._batch(self._purge_one, calls))
        return purged

    async def list_abandoned(self, *, limit: int = 100) -> list[Record]:
        """Up to ``limit`` abandoned records, oldest abandonment first (stale index entries are dropped)."""
        found: list[Record] = []
        for tag in self._tags:
            start, count = 0, 0
            while count < limit:
                ids = await self._ids(self.client.zrange(f"{tag}:abandoned", start, start + limit - count - 1))
                if not ids:
                    break
                calls = [([f"{tag}:r:{rid.decode()}", f"{tag}:abandoned"], [rid]) for rid in ids]
                replies = await self._batch(self._abandoned_one, calls)
                live = [_decode(rid.decode(), fields) for rid, fields in zip(ids, replies, strict=True) if fields]
                found += live
                start += len(live)
                count += len(live)
        found.sort(key=lambda r: r.updated_at)
        return found[:limit]

    async def _ids(self, command: Awaitable[Any]) -> list[bytes]:
        try:
            return [bytes(x) for x in await command]
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis store failed: {exc}") from exc

    async def _batch(self, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        # One round trip through a pipeline on a plain client; one script call at a time on a cluster client
        # (redis-py's cluster pipeline does not load scripts).
        if not self._checked:
            await self._first_use()
        try:
            if isinstance(self.client, Redis):
                pipe = self.client.pipeline(transaction=False)
                for keys, args in calls:
                    await script(keys=keys, args=args, client=pipe)
                return list(await pipe.execute())
            return [await script(keys=keys, args=args) for keys, args in calls]
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis store failed: {exc}") from exc

    async def default_secret(self) -> None:
        """None: every instance must be configured with the same scope secret."""

    async def aclose(self) -> None:
        """Close the client when this store created it (:meth:`from_url`)."""
        if self._close_client:
            await self.client.aclose()

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, shards={self.shards})"


def _to_us(seconds: float) -> int:
    return round(seconds * _US)


def _decode(record_id: str, flat: list[bytes]) -> Record:
    """A record from a script's ``HGETALL`` reply; RecordDecodeError when it is incomplete or of another schema."""
    try:
        f = dict(zip(flat[::2], flat[1::2], strict=True))
        version = int(f[b"sv"])
        if version != SCHEMA_VERSION:
            raise RecordDecodeError(f"unknown schema_version {version!r}")
        completed, outcome, status = f.get(b"co"), f.get(b"oc"), f.get(b"sc")
        return Record(
            record_id=record_id,
            state=_STATES[f[b"st"]],
            fingerprint=f[b"fp"],
            fp_version=int(f[b"fv"]),
            owner_token=f[b"ow"].decode(),
            fence=int(f[b"fe"]),
            attempt=int(f[b"at"]),
            lease_expires_at=int(f[b"le"]) / _US,
            created_at=int(f[b"cr"]) / _US,
            updated_at=int(f[b"up"]) / _US,
            expires_at=int(f[b"ex"]) / _US,
            completed_at=None if completed is None else int(completed) / _US,
            outcome=None if outcome is None else _OUTCOMES[outcome],
            status=None if status is None else int(status),
            headers=decode_headers(f.get(b"hd", b"")),
            body=f.get(b"bd", b""),
            body_omitted=f.get(b"om") == b"1",
            schema_version=version,
        )
    except RecordDecodeError:
        raise
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise RecordDecodeError(f"undecodable idempotency record: {exc!r}") from exc
