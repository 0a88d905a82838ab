"""``IdempotencyMiddleware``: pure ASGI idempotency keys for Starlette, FastAPI or any ASGI app (spec §2.8).

Flow per request: gate (http, method, route) → header (§2.3) → scope resolver (§2.4) → buffer the body and
fingerprint it (§2.5) → optional L1 cache → claim → classify: execute, 422, replay, outcome-unknown, 409 or 503.
Configuration: ``config`` applies app-wide; ``routes`` maps ``"[METHOD ]/path/{param}"`` templates to their own
:class:`IdempotencyConfig` (or None to disable); an endpoint decorated with :func:`idempotent` overrides both and
sets the execution-started marker. Middleware order: authentication → idempotency → app. On the ASGI lifespan
start-up the store's server check runs (``check_server()``, RedisStore) before the app starts; a strict refusal
fails the start-up.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random as random_module
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._config import check_int, to_seconds_or_none
from stalwart._exceptions import CircuitOpenError, StoreUnavailable
from stalwart._policy import is_async_callable

from ._answers import Answers, ReplayCache, unavailable_retry_after
from ._execution import Execution, heartbeat_loop
from ._fingerprint import FP_VERSION, compute_fingerprint, header_values
from ._identity import Identity, Resolver
from ._keys import FORMAT_REFUSED, InvalidKey, check_secret, parse_key_header, scope_id
from ._options import IdempotencyConfig, override_config
from ._record import ClaimResult, Record, RecordDecodeError, State
from ._replay import ProblemFactory, send_response
from ._routing import NO_ROUTE, TOO_LARGE, Route, compile_template, find_endpoint, read_body, replaying_receive
from ._state import ROUTE_CONFIG_ATTRIBUTE, IdempotencyState, _current
from ._store import IdempotencyStore
from ._store_breaker import claim_through_breaker
from ._transactional import run_transactional

__all__ = ["IdempotencyMiddleware"]

logger = logging.getLogger("stalwart")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METRICS = (
    "claims",
    "replays",
    "conflicts_409",
    "mismatches_422",
    "store_unavailable_503",
    "lease_lost",
    "abandoned",
    "completion_write_failures",
    "fail_open_bypasses",
    "lenient_header_accepts",
    "give_backs_dropped",
)
_UNSEEN = object()
_RESOLVER_FAILED = object()
_DROP_LOG_EVERY = 10.0  # seconds between two warnings about dropped give-backs
_PURGE_BATCH = 1000  # records per store.purge() call
_PURGE_BATCHES_PER_RUN = 10  # batches one purge run makes at most before it pauses (at most 1 s)


class _GiveBack:
    """The owners whose claim of one record id a running give-back releases (see ``_give_back``)."""

    __slots__ = ("deadline", "owners", "store_timeout")

    def __init__(self, owners: set[str], deadline: float, store_timeout: float) -> None:
        self.owners = owners
        self.deadline = deadline
        self.store_timeout = store_timeout


def _proved_not_applied(exc: BaseException) -> bool:
    """Whether the store's failure ``exc`` proves the claim was not applied: the store sets ``not_applied = True``
    on an exception raised before the command could reach the server (RedisStore: its server check failed, or
    refused strictly, before the first command). Anything else may have been applied and is given back."""
    return getattr(exc, "not_applied", False) is True


_STREAM_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopy", "http.response.trailers")


class IdempotencyMiddleware:
    """Idempotency keys for an ASGI app (the behaviour and the configuration are described in docs/idempotency.md).

    Args:
        app: the ASGI app to protect (place authentication outside this middleware).
        store: an :class:`IdempotencyStore` (``SQLiteStore`` is the embedded default).
        resolver: ``(asgi_scope) -> Identity | None``, sync or async (detected once; an awaitable returned by a
            resolver taken for sync is awaited too), returning the *verified* identity. A resolver that raises or
            returns anything but an ``Identity`` (string fields) or None gets 401 on every route.
        secret: the scope HMAC secret shared by every instance (at least 32 bytes); optional with stores that
            provide one (SQLite keeps one in its file; memory generates one per process).
        config: the app-wide :class:`IdempotencyConfig` (default: its defaults).
        routes: ``{"POST /payments/{id}": IdempotencyConfig(...) | None}``; None disables a route.
        enabled: apply ``config`` to every route not in ``routes`` (default True); False makes it opt-in.
        problem_base: prefix of the problem ``type`` URIs (default ``"https://stalwart.dev/problems/"``).
        docs_url: linked from the 400 for a missing key (``Link: <url>; rel="describedby"``), optional.
        l1_cache: entries of an in-process cache of completed records (default 0: off; 256 is typical).
        breaker: an optional :class:`~stalwart.CircuitBreaker` in front of the store's claims; open → 503 with
            ``Retry-After`` (the breaker's remaining open time, capped by ``retry_after_cap``), on ``fail_open``
            routes too: breaker state never runs the handler.
        purge_interval: seconds between purges of expired records (default 60; None: never). Each run deletes
            batches of 1000 while a batch comes back full, at most 10 per run; a run that hits that cap is
            followed by the next one after at most 1 s. The runs come from a background task started when the
            app's lifespan starts up (stopped at shut-down, sleeping on ``clock``), or, without a lifespan or with
            a ``FakeClock`` (whose sleeps advance time), from the first keyed request after each interval.
        max_give_backs: background give-backs (releases of a claim that may have been applied but whose request
            will not run) running at once, at most one per record id (default 256; at least 1); beyond it the newest
            is dropped, counted in ``give_backs_dropped`` and logged.
        clock: monotonic clock for heartbeats, waits and capture limits (default: the system clock).
        random: ``() -> float`` in [0, 1) for jitter (default :func:`random.random`).

    Raises:
        ValueError: invalid ``secret``, ``routes`` keys, ``purge_interval`` or ``max_give_backs``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: IdempotencyStore,
        resolver: Resolver,
        secret: bytes | str | None = None,
        config: IdempotencyConfig | None = None,
        routes: Mapping[str, IdempotencyConfig | None] | None = None,
        enabled: bool = True,
        problem_base: str = "https://stalwart.dev/problems/",
        docs_url: str | None = None,
        l1_cache: int = 0,
        breaker: Any = None,
        purge_interval: float | None = 60.0,
        max_give_backs: int = 256,
        clock: Clock = SYSTEM_CLOCK,
        random: Callable[[], float] = random_module.random,
    ) -> None:
        self.app = app
        self.store = store
        self._resolver = resolver
        self._resolver_is_async = is_async_callable(resolver)
        self._secret = None if secret is None else check_secret(secret)
        if self._secret is None and getattr(store, "requires_secret", False):
            raise ValueError(f"secret is required with {type(store).__name__} (at least 32 bytes, shared by instances)")
        self.config = config or IdempotencyConfig()
        self._base = Route(self.config, marker=False) if enabled else None
        self._routes = [
            (*compile_template(k), None if v is None else Route(v, marker=False)) for k, v in (routes or {}).items()
        ]
        self._route_cache: OrderedDict[tuple[str, str, bytes], Route | None] = OrderedDict()
        self._endpoint_routes: dict[tuple[int, int], Route | None] = {}
        self._problems = ProblemFactory(problem_base)
        self._docs_link = None if docs_url is None else f'<{docs_url}>; rel="describedby"'.encode()
        self._breaker = breaker
        self._purge_interval = to_seconds_or_none(purge_interval, "purge_interval", allow_zero=False)
        self._clock = clock
        self._random = random
        self._next_purge = clock.monotonic() + (self._purge_interval or 0.0)
        self._purge_task: asyncio.Future[None] | None = None
        self._purging = False  # a purge run is in progress
        self._purge_stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        self._max_give_backs = check_int(max_give_backs, "max_give_backs", minimum=1)
        self._give_backs: dict[str, _GiveBack] = {}
        self._drop_logged_at = -math.inf
        self._stats = dict.fromkeys(METRICS, 0)
        self._bad_identity_logged = False
        cache = ReplayCache(check_int(l1_cache, "l1_cache", minimum=0), clock) if l1_cache else None
        self._answers = Answers(self._problems, self._count, cache, self._random)
        configs = [self.config, *(r.cfg for _, _, r in self._routes if r is not None)]
        if any(c.transactional for c in configs) and not callable(getattr(store, "transaction", None)):
            raise ValueError(f"transactional=True needs a store with transaction() (PostgresStore), not {store!r}")

    # -- public helpers -------------------------------------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        """Counters since start (spec §2.17 names and ``give_backs_dropped``), plus the store's ``evictions``
        (MemoryStore) and ``replication_shortfalls`` (RedisStore with ``wait_replicas``), 0 for stores without them."""
        stats = dict(self._stats)
        stats["evictions"] = int(getattr(self.store, "evictions", 0))
        stats["replication_shortfalls"] = int(getattr(self.store, "replication_shortfalls", 0))
        return stats

    def _count(self, name: str) -> None:
        self._stats[name] += 1

    # -- routing --------------------------------------------------------------------------------------------------

    def _route_for(self, scope: Scope) -> Route | None:
        # The router may dispatch on the Host header as well as the path (Starlette's Host routes): both key the cache.
        hosts = header_values(scope["headers"], b"host")
        key = (scope["method"], scope["path"], hosts[0] if hosts else b"")
        cached = self._route_cache.get(key, _UNSEEN)
        if cached is not _UNSEEN:
            return cached  # type: ignore[return-value]
        route = self._resolve_route(scope)
        self._route_cache[key] = route
        if len(self._route_cache) > 1024:
            self._route_cache.popitem(last=False)
        return route

    def _resolve_route(self, scope: Scope) -> Route | None:
        base = self._base
        for methods, pattern, configured in self._routes:
            if (methods is None or scope["method"] in methods) and pattern.match(scope["path"]):
                base = configured
                break
        endpoint = find_endpoint(scope, self.app)
        if endpoint is NO_ROUTE:
            # Routing answers (404, 405, redirect) without running an endpoint: a marker route that is never
            # started, so whatever it answers is released, not stored.
            return None if base is None else Route(base.cfg, marker=True)
        overrides = getattr(endpoint, ROUTE_CONFIG_ATTRIBUTE, None)
        if overrides is None:
            return base
        # Keyed by the endpoint *and* the path's own settings: one endpoint served at several paths (an API mounted
        # under /v1 and /v2) applies its overrides on top of each path's settings.
        cache_key = (id(endpoint), id(base))
        cached = self._endpoint_routes.get(cache_key, _UNSEEN)
        if cached is _UNSEEN:
            overrides = dict(overrides)
            if overrides.pop("enabled", True) is False:
                cached = None
            else:
                cached = Route(override_config(base.cfg if base is not None else self.config, overrides), marker=True)
            self._endpoint_routes[cache_key] = cached
        return cached  # type: ignore[return-value]

    # -- ASGI entry point -----------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route_for(scope)
        if route is None or scope["method"] not in route.methods or scope["method"] == "OPTIONS":
            # OPTIONS (CORS preflight) is never intercepted, whatever ``methods`` says (spec §2.2).
            await self.app(scope, receive, send)
            return
        values = header_values(scope["headers"], b"idempotency-key")  # any case: ASGI need not lower-case names
        if not values:
            if route.cfg.required:
                extra = [(b"link", self._docs_link)] if self._docs_link else []
                await self._problem(send, 400, "idempotency-key-missing", "Idempotency-Key header required", extra)
                return
            await self.app(scope, receive, send)
            return
        await self._handle(route, scope, receive, send, values)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI lifespan: check the store at start-up, then pass every event on to the app.

        On ``lifespan.startup`` the store's start-up check runs first (``check_server()``, when the store has one:
        RedisStore's server settings, spec §2.16.3), so problems are logged at start-up rather than on the first
        request. A check that refuses (``RedisServerCheckError`` with ``strict_server_checks=True``, or any error
        other than ``StoreUnavailable``) fails the start-up: ``lifespan.startup.failed`` with the message, as
        Starlette reports a failing start-up, and the app never sees the event. A store that cannot be reached is
        logged and checked again on first use. Everything else reaches the app unchanged.
        """
        message = await receive()
        if message["type"] == "lifespan.startup":
            failure = await self._check_store()
            if failure is not None:
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
        first = [message]

        async def app_receive() -> Message:
            received = first.pop() if first else await receive()
            if received["type"] == "lifespan.shutdown":
                await self._stop_purging()  # before the app's own shut-down closes the store
            return received

        async def app_send(sent: Message) -> None:
            if sent["type"] == "lifespan.startup.complete":
                self._start_purging()
            await send(sent)

        try:
            await self.app(scope, app_receive, app_send)
        finally:  # the app's lifespan ended (or does not exist): purges go back to the request-driven trigger
            await self._stop_purging()

    async def _check_store(self) -> str | None:
        """Run the store's start-up check; the message of a refusal that must fail the start-up, else None."""
        check = getattr(self.store, "check_server", None)
        if not callable(check):
            return None
        try:
            async with asyncio.timeout(float(self.config.store_timeout)):  # type: ignore[arg-type]  # normalised
                await check()
        except Exception as exc:
            if isinstance(exc, TimeoutError) or (isinstance(exc, StoreUnavailable) and not _is_server_refusal(exc)):
                logger.warning(
                    "idempotency: the store's start-up check could not run (%s); it runs again on first use",
                    exc or type(exc).__name__,
                )
                return None
            logger.error("idempotency: the store's start-up check failed: %s", exc)
            return f"idempotency store check failed: {exc}"
        return None

    async def _problem(
        self, send: Send, status: int, name: str, title: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await self._answers.problem(send, status, name, title, extra or ())

    async def _handle(self, route: Route, scope: Scope, receive: Receive, send: Send, values: list[bytes]) -> None:
        cfg = route.cfg
        try:
            parsed = parse_key_header(
                values,
                lenient=cfg.lenient_header,
                max_length=cfg.max_key_length,
                min_length=cfg.min_key_length,
            )
            assert parsed is not None  # values is not empty
            # The format check runs here, not in the (synchronous) parser, so that an async validator is awaited.
            if cfg.key_validator is not None and not await _key_passes(cfg.key_validator, parsed.key):
                raise InvalidKey(FORMAT_REFUSED)
        except InvalidKey as exc:
            await send_response(send, self._problems.build(400, "idempotency-key-invalid", exc.reason))
            return
        if parsed.lenient:
            self._count("lenient_header_accepts")
        identity = await self._identify(scope)
        if identity is _RESOLVER_FAILED:  # spec §2.8 step 3: a failing resolver is a 401, anonymous routes included
            await self._problem(send, 401, "idempotency-principal-required", "Authenticated principal required")
            return
        assert identity is None or isinstance(identity, Identity)
        if identity is None or not identity.principal:
            if not cfg.allow_anonymous:
                await self._problem(send, 401, "idempotency-principal-required", "Authenticated principal required")
                return
            if not await _key_passes(cfg.anonymous_key_validator, parsed.key):
                await self._problem(send, 400, "idempotency-key-invalid", "Anonymous keys must be random UUIDs")
                return
            identity = Identity("", "anonymous")
        body = await read_body(scope, receive, cfg.max_request_body)
        if body is None:
            return  # the client disconnected before sending its body: nothing was claimed
        if body is TOO_LARGE:
            await self._problem(send, 413, "idempotency-request-too-large", "Request body too large")
            return
        assert isinstance(body, bytes)
        raw_path = _request_path(scope)
        fingerprint = compute_fingerprint(
            route.fingerprint,
            method=scope["method"],
            raw_path=raw_path,
            query=scope.get("query_string", b""),
            headers=scope["headers"],
            body=body,
        )
        self._maybe_purge()
        try:
            secret = await self._get_secret(route)
        except StoreUnavailable:
            await self._unavailable(route, scope, receive, send, body)
            return
        namespace = cfg.namespace
        if cfg.scope_by_route:
            namespace = f"{namespace}\x00{scope['method']} {raw_path.decode('latin-1')}"
        record_id = scope_id(
            secret, tenant=identity.tenant, principal=identity.principal or "", namespace=namespace, key=parsed.key
        )
        if self._answers.cache is not None:
            cached = self._answers.cache.get(record_id)
            if cached is not None:
                await self._answers.existing(route, scope, send, cached, fingerprint=fingerprint, store_now=None)
                return
        if route.transactional:
            state = IdempotencyState(key=parsed.key, record_id=record_id, fence=0, attempt=1, secret=secret)
            await run_transactional(
                self.store,
                route,
                app=self.app,
                scope=_scope_for_app(scope, state),
                receive=replaying_receive(body, receive, shield=cfg.shield_disconnect),
                send=send,
                record_id=record_id,
                fingerprint=fingerprint,
                state=state,
                answers=self._answers,
                unavailable=lambda: self._unavailable(route, scope, receive, send, body),
            )
            return
        owner = secrets.token_hex(16)
        wait_until = self._clock.monotonic() + route.wait_timeout
        delay = 0.05
        while True:
            try:
                result = await self._claim(route, record_id, fingerprint, owner)
            except CircuitOpenError as exc:
                # The breaker refused: the store was not asked. Breaker state never triggers execution (spec
                # §2.14), so this is a 503 on fail_open routes too; fail_open is for a store that failed.
                await self._answers.unavailable(send, self._breaker_retry_after(route, exc))
                return
            except (StoreUnavailable, RecordDecodeError) as exc:
                if isinstance(exc, RecordDecodeError):
                    logger.error("idempotency: undecodable record %s…: %s", record_id[:12], exc)
                await self._unavailable(route, scope, receive, send, body)
                return
            if result.claimed:
                self._count("claims")
                await self._execute(
                    route,
                    scope,
                    receive,
                    send,
                    body=body,
                    key=parsed.key,
                    secret=secret,
                    record=result.record,
                    owner=owner,
                )
                return
            record = result.record
            waiting = record.state is State.IN_PROGRESS and record.fingerprint == fingerprint
            remaining = wait_until - self._clock.monotonic()
            if not waiting or remaining <= 0:
                await self._answers.existing(route, scope, send, record, fingerprint=fingerprint, store_now=result.now)
                return
            await self._clock.asleep(min(remaining, delay * (0.5 + self._random())))
            delay = min(delay * 2, 1.0)

    async def _identify(self, scope: Scope) -> Identity | object | None:
        """The resolver's identity, None for "no principal", or ``_RESOLVER_FAILED`` (it raised, or returned
        something other than an ``Identity`` with string fields or None: the scope HMAC cannot use it)."""
        try:
            found = self._resolver(scope)
            if self._resolver_is_async or inspect.isawaitable(found):  # a sync callable may return an awaitable
                found = await found  # type: ignore[misc]
        except Exception:
            logger.exception("idempotency: the scope resolver failed; answering 401")
            return _RESOLVER_FAILED
        if found is None:
            return None
        problem = _identity_problem(found)
        if problem is None:
            return found
        if not self._bad_identity_logged:  # a resolver bug repeats on every request: one line is enough
            self._bad_identity_logged = True
            logger.error("idempotency: the scope resolver returned %s; answering 401 (logged once)", problem)
        return _RESOLVER_FAILED

    async def _get_secret(self, route: Route) -> bytes:
        if self._secret is None:
            try:
                async with asyncio.timeout(route.store_timeout):
                    provided = await self.store.default_secret()
            except StoreUnavailable:
                raise
            except Exception as exc:  # a timeout, or a driver error the store let escape
                raise StoreUnavailable(f"reading the store's secret failed: {exc!r}") from exc
            if provided is None:
                raise StoreUnavailable(f"{type(self.store).__name__} provides no secret; pass secret=")
            self._secret = check_secret(provided)
        return self._secret

    async def _claim(self, route: Route, record_id: str, fingerprint: bytes, owner: str) -> ClaimResult:
        if self._breaker is None:
            return await self._claim_store(route, record_id, fingerprint, owner)
        return await claim_through_breaker(
            self._breaker,
            lambda: self._claim_store(route, record_id, fingerprint, owner),
            give_back=lambda: self._give_back(route, record_id, owner),
        )

    async def _claim_store(self, route: Route, record_id: str, fingerprint: bytes, owner: str) -> ClaimResult:
        last: BaseException | None = None
        maybe_applied = False  # whether a failed attempt may have left the claim applied
        try:
            for _ in range(2):  # an ambiguous claim is repeated with the same owner token (it is idempotent)
                try:
                    async with asyncio.timeout(route.store_timeout):
                        return await self.store.claim(
                            record_id,
                            fingerprint=fingerprint,
                            fp_version=FP_VERSION,
                            owner_token=owner,
                            lease_ttl=route.lease_ttl,
                            retention=route.retention,
                            reclaim=route.reclaim,
                        )
                except RecordDecodeError:
                    raise  # the record is the problem, not the connection: 503 at once
                except Exception as exc:  # StoreUnavailable, a timeout, or a driver error the store let escape
                    if not isinstance(exc, StoreUnavailable | TimeoutError):
                        logger.warning("idempotency: the store's claim raised %r; treated as unavailable", exc)
                    maybe_applied = maybe_applied or not _proved_not_applied(exc)
                    last = exc
        except asyncio.CancelledError:  # cancelled mid-claim: the claim may have been applied
            self._give_back(route, record_id, owner)
            raise
        if maybe_applied:  # no give-back when every attempt failed before reaching the store
            self._give_back(route, record_id, owner)
        raise StoreUnavailable("the idempotency store did not answer the claim") from last

    def _give_back(self, route: Route, record_id: str, owner: str) -> None:
        """Release in the background the record of ``owner``, whose request processed nothing.

        Used for a claim that may have been applied but whose request will not run, and for a release (a "not
        processed, retry" outcome) that failed on the request path. The load on a failing store is bounded: one
        give-back per record id at a time (a second owner of the same id joins the running one), and at most
        ``max_give_backs`` at once; beyond that the newest is dropped (counted in ``give_backs_dropped`` and logged
        at most every 10 s): its record, if the claim did land, lapses into ABANDONED as it would without a
        give-back. The running ones are kept because they have already waited out part of the outage.
        """
        now = self._clock.monotonic()
        pending = self._give_backs.get(record_id)
        if pending is not None:
            pending.owners.add(owner)
            pending.deadline = max(pending.deadline, now + 2 * route.lease_ttl)
            pending.store_timeout = route.store_timeout
            return
        if len(self._give_backs) >= self._max_give_backs:
            self._stats["give_backs_dropped"] += 1
            if now - self._drop_logged_at >= _DROP_LOG_EVERY:
                self._drop_logged_at = now
                logger.warning(
                    "idempotency: %d give-backs running (max_give_backs); dropped %d so far: a claim the store may "
                    "have applied without answering lapses into ABANDONED (outcome unknown) after its lease",
                    len(self._give_backs),
                    self._stats["give_backs_dropped"],
                )
            return
        pending = self._give_backs[record_id] = _GiveBack({owner}, now + 2 * route.lease_ttl, route.store_timeout)
        self._spawn(self._release_until_answered(record_id, pending))

    async def _release_until_answered(self, record_id: str, pending: _GiveBack) -> None:
        """Release the record of ``record_id`` if one of the ``pending`` owners still holds it: nothing was processed
        under it.

        The store just failed, so a single attempt usually fails too, and a record left in place would lapse into
        ABANDONED and answer "outcome unknown" for the retention although nothing was processed. So the release is
        retried with backoff (on the middleware's clock) for up to twice the lease (of the latest owner to join),
        and also applies to a record a retry has meanwhile abandoned (the release is a compare-and-set on owner and
        fence: it never touches another request's record, and a completed record is left alone). An owner joining
        during a pass is handled by another pass.
        """
        delay = 0.1
        try:
            while pending.owners:
                owners = set(pending.owners)  # before the read: an owner joining later gets a pass of its own
                try:
                    async with asyncio.timeout(pending.store_timeout):
                        record = await self.store.get(record_id)
                        if record is not None and record.owner_token in owners and record.state is not State.COMPLETED:
                            await self.store.release(record_id, owner_token=record.owner_token, fence=record.fence)
                except Exception:
                    remaining = pending.deadline - self._clock.monotonic()
                    if remaining <= 0:
                        raise
                    await self._clock.asleep(min(delay * (0.5 + self._random()), remaining))
                    delay = min(delay * 2, 5.0)
                    continue
                pending.owners -= owners
        finally:
            if self._give_backs.get(record_id) is pending:
                del self._give_backs[record_id]

    def _breaker_retry_after(self, route: Route, exc: CircuitOpenError) -> int:
        """The 503's ``Retry-After`` for an open breaker: its remaining open time when known (rounded up, capped by
        ``retry_after_cap``), else the usual jittered 1-2 s."""
        if exc.retry_after is None:
            return unavailable_retry_after(self._random)
        return max(1, math.ceil(min(exc.retry_after, route.retry_after_cap)))

    async def _unavailable(self, route: Route, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        if route.cfg.fail_open:
            self._count("fail_open_bypasses")
            logger.warning(
                "idempotency store unavailable; fail_open runs %s %s without idempotency",
                scope["method"],
                scope["path"],
            )
            await self.app(scope, replaying_receive(body, receive, shield=False), send)
            return
        await self._answers.unavailable(send)  # the jittered 1-2 s, on the middleware's random

    # -- execution ------------------------------------------------------------------------------------------------

    async def _execute(
        self,
        route: Route,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        body: bytes,
        key: str,
        secret: bytes,
        record: Record,
        owner: str,
    ) -> None:
        state = IdempotencyState(
            key=key, record_id=record.record_id, fence=record.fence, attempt=record.attempt, secret=secret
        )
        app_scope = _scope_for_app(scope, state)
        execution = Execution(
            route=route,
            store=self.store,
            record_id=record.record_id,
            owner=owner,
            fence=record.fence,
            state=state,
            send=send,
            clock=self._clock,
            problems=self._problems,
            count=self._count,
            give_back=lambda: self._give_back(route, record.record_id, owner),
            head=scope["method"] == "HEAD",
        )
        execution.heartbeat = heartbeat = asyncio.create_task(
            heartbeat_loop(
                self.store, route, record_id=record.record_id, owner=owner, fence=record.fence, clock=self._clock
            )
        )
        token = _current.set(state)
        try:
            await self.app(
                app_scope, replaying_receive(body, receive, shield=route.cfg.shield_disconnect), execution.send
            )
        except BaseException as exc:
            await execution.on_exception(exc)
            raise
        else:
            await execution.on_return()
        finally:
            _current.reset(token)
            heartbeat.cancel()
            await asyncio.wait({heartbeat})

    # -- background work and the L1 cache -------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("idempotency background task failed: %r", task.exception())

    # -- purging expired records (spec §2.15) ----------------------------------------------------------------------

    def _start_purging(self) -> None:
        """Start the periodic purge task (the app's lifespan started).

        Not with a clock whose sleeps advance time at once (``FakeClock``): a timer loop on it would move the
        clock forward by ``purge_interval`` at every turn of the event loop (leases and retention lapsing in the
        user's tests); the request-driven trigger purges instead, on the same clock.
        """
        if getattr(self._clock, "sleeping_advances_time", False) is True:
            return
        if self._purge_interval is not None and self._purge_task is None:
            self._purge_stopping = False
            self._purge_task = asyncio.ensure_future(self._purge_loop(self._purge_interval))

    async def _stop_purging(self) -> None:
        """Stop the periodic purge task: at once while it waits, after its current batch while it purges."""
        task, self._purge_task = self._purge_task, None
        if task is None:
            return
        self._purge_stopping = True
        if not self._purging:
            task.cancel()
        await asyncio.wait({task})
        self._purge_stopping = False

    async def _purge_loop(self, interval: float) -> None:
        delay = interval
        while True:
            self._next_purge = self._clock.monotonic() + delay
            await self._clock.asleep(delay)
            delay = await self._purge()
            if self._purge_stopping:
                return

    def _maybe_purge(self) -> None:
        """The request-driven trigger, for apps without a lifespan (the periodic task does it otherwise)."""
        if (
            self._purge_interval is None
            or self._purge_task is not None
            or self._purging
            or self._clock.monotonic() < self._next_purge
        ):
            return
        self._purging = True  # set now: the next request must not start a second run
        self._spawn(self._purge_from_request())

    async def _purge_from_request(self) -> None:
        delay = await self._purge()
        self._next_purge = self._clock.monotonic() + delay

    async def _purge(self) -> float:
        """One purge run: batches of ``_PURGE_BATCH`` while a batch comes back full, at most
        ``_PURGE_BATCHES_PER_RUN`` of them so that one run cannot monopolise the store. Returns the seconds until
        the next run: ``purge_interval``, or at most 1 s when the cap left expired records behind. The store
        deletes only records past their retention (a live record is never touched); failures are logged."""
        assert self._purge_interval is not None
        self._purging = True
        backlog = False
        try:
            for _ in range(_PURGE_BATCHES_PER_RUN):
                if await self.store.purge(limit=_PURGE_BATCH) < _PURGE_BATCH:
                    break
                if self._purge_stopping:
                    break
            else:
                backlog = True
        except Exception as exc:
            logger.warning("idempotency: purging expired records failed: %r", exc)
        finally:
            self._purging = False
        return min(self._purge_interval, 1.0) if backlog else self._purge_interval


async def _key_passes(check: Callable[[str], Any], key: str) -> bool:
    """Whether the key format check ``check`` (sync or async: an awaitable result is awaited) accepts ``key``; an
    exception is a refusal."""
    try:
        ok = check(key)
        if inspect.isawaitable(ok):  # a coroutine is truthy: taking it for a pass would accept every key
            ok = await ok
    except Exception:
        return False
    return bool(ok)


def _is_server_refusal(exc: StoreUnavailable) -> bool:
    """Whether ``exc`` is RedisStore's strict refusal of the server's settings (not a connection failure)."""
    try:
        from .stores._redis_checks import RedisServerCheckError  # noqa: PLC0415 - needs redis-py
    except ImportError:  # redis-py is not installed: no RedisStore raised it
        return False
    return isinstance(exc, RedisServerCheckError)


def _identity_problem(found: object) -> str | None:
    """Why the resolver result ``found`` (not None) is no usable identity, or None when it is one.

    ``Identity`` checks its fields, but a subclass or ``object.__setattr__`` can get around that, and the scope HMAC
    needs ``str`` fields."""
    if not isinstance(found, Identity):
        return f"a {type(found).__name__}, not an Identity or None"
    principal: object = found.principal
    tenant: object = found.tenant
    if principal is not None and not isinstance(principal, str):
        return f"an Identity whose principal is a {type(principal).__name__}, not a str or None"
    if not isinstance(tenant, str):
        return f"an Identity whose tenant is a {type(tenant).__name__}, not a str"
    return None


def _request_path(scope: Scope) -> bytes:
    """The path as received, for the fingerprint and ``scope_by_route`` (spec §2.5): ``raw_path`` without any query.

    ASGI's ``raw_path`` excludes the query, but only since a clarification (django/asgiref PR #402); httpx's
    ``ASGITransport`` before 0.28 and some servers pass the whole request target. The query is hashed from
    ``query_string`` (where ``exclude_query`` and ``query_canonical`` apply), so it is cut here at the first ``?``,
    which cannot occur literally in a path.
    """
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    return bytes(raw_path).partition(b"?")[0]


def _scope_for_app(scope: Scope, state: IdempotencyState) -> Scope:
    """The scope the app sees under a claimed key: the idempotency state published, zero-copy extensions hidden.

    Capture (and, in transactional mode, the buffered response) needs every body byte to pass through ``send``, so
    ``http.response.pathsend``, ``zerocopy`` and ``trailers`` are withheld; the server's own scope is not changed.
    """
    extensions = scope.get("extensions")
    if extensions and any(name in extensions for name in _STREAM_EXTENSIONS):
        scope = {**scope, "extensions": {k: v for k, v in extensions.items() if k not in _STREAM_EXTENSIONS}}
    scope.setdefault("state", {})["idempotency"] = state
    return scope
