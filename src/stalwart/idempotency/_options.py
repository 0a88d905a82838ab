"""Per-route idempotency settings (spec §2.17), validated at construction."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

from stalwart._config import check_int, to_seconds, to_seconds_or_none, to_units

from ._fingerprint import FingerprintSpec
from ._keys import is_uuid4

__all__ = [
    "DEFAULT_DENIED_REPLAY_HEADERS",
    "DEFAULT_RELEASE_STATUSES",
    "IdempotencyConfig",
    "check_overrides",
    "override_config",
]

logger = logging.getLogger("stalwart")

DEFAULT_RELEASE_STATUSES = frozenset({401, 403, 408, 425, 429, 503})
"""Statuses meaning "not processed, retry": the record is released (spec §2.9)."""

DEFAULT_DENIED_REPLAY_HEADERS = frozenset({"set-cookie", "x-ratelimit-*", "retry-after"})
"""Response headers not replayed unless allowed with ``replay_headers_allowed`` (spec §2.10); ``*`` is a prefix."""

_MIN_RECOMMENDED_RETENTION = 3600.0
# The longest retention or lease: the stores write now + lease_ttl + retention, which must stay a time each of them
# can store and read back (PostgreSQL's timestamps end at Python's year 9999; RedisStore's scripts count whole
# microseconds in Lua numbers, exact below 2**53, about the year 2255, and readable below 1e17, about 5100).
_MAX_RECORD_DURATION = 100 * 365 * 86_400.0  # 100 years of 365 days
_MAX_POSTGRES_MS = 2**31 - 1  # PostgreSQL's duration settings (statement_timeout, lock_timeout, ...) are int32 ms


@dataclass(frozen=True, slots=True)
class IdempotencyConfig:
    """How one route (or the whole app) handles ``Idempotency-Key`` (spec §2.17 gives the defaults).

    Durations are float seconds (a ``timedelta`` is accepted); sizes are bytes.

    Args:
        methods: methods the key applies to (default POST and PATCH); GET, HEAD, OPTIONS, PUT and DELETE pass through.
        required: a missing key is a 400 (default False: the request passes through without a record).
        lenient_header: accept bare unquoted keys (default True); False accepts only sf-strings.
        max_key_length: longest key (default 255). ``min_key_length``: shortest (default 1).
        key_validator: optional key format check ``(key) -> bool``, sync or async (an awaitable result is awaited),
            such as :func:`~stalwart.idempotency.is_uuid4` (false or an exception: 400).
        allow_anonymous: serve requests without a verified principal in a fixed "anonymous" scope (default False:
            401). Anonymous keys must pass ``anonymous_key_validator`` (sync or async like ``key_validator``;
            default: a UUIDv4); anyone holding the key
            can read the replay.
        namespace: part of the scope (default ``"default"``). ``scope_by_route``: put method and path in the scope
            instead of the fingerprint, so each endpoint has independent keys (default False: another endpoint
            with the same key gets 422).
        fingerprint: what the fingerprint covers (:class:`~stalwart.idempotency.FingerprintSpec`).
        retention: how long a record is kept after completion (default 24 h; under 1 h logs a warning; at most
            100 years).
        lease_ttl: how long an execution holds the key without a heartbeat (default 30 s; at most 100 years).
        heartbeat_every: lease renewal period (default ``lease_ttl / 3``); must be below ``lease_ttl``.
        wait_timeout: how long a duplicate waits for the original before answering 409 (default 0).
        retry_after_cap: cap of the 409's ``Retry-After`` (default 5 s).
        release_statuses: statuses that release the record (default 401, 403, 408, 425, 429, 503).
        store_5xx: store 500/502/504 returned by the handler (default True); False releases them.
        release_on_exception: release on an unhandled exception instead of storing a 500 (default False).
        retryable_exceptions: exception types that mean "not applied, retry": the record is released. An exception
            group (a ``TaskGroup`` in the handler) counts when all its leaves, nested groups included, are of these
            types; a group with any other leaf is stored as an exception.
        reclaim_on_lease_expiry: re-run after an expired lease or an abandonment (at-least-once; default False).
        abandoned_status: status replayed for an abandoned record (default 500, "outcome unknown").
        max_request_body: largest buffered request body (default 10 MiB; above: 413).
        max_stored_body: largest stored response body (default 1 MiB; above: stored as omitted).
        max_capture_duration: longest response capture (default 5 min; longer: body omitted).
        store_timeout: limit of each store call on the request path (default 2 s).
        completion_attempts: tries to store the result (default 3) within ``completion_budget`` (default 2 s).
        fail_open: run the handler without idempotency when the store is unavailable (default False: 503).
        shield_disconnect: keep running when the client disconnects (default True).
        replay_header: header marking replays (default ``Idempotent-Replayed``). ``mark_first_response``: also
            send ``<replay_header>: false`` on first executions (default False).
        replay_headers_allowed: lower-case names exempted from ``DEFAULT_DENIED_REPLAY_HEADERS``.
        transactional: run the handler inside the store's transaction so its writes and the record commit together
            (spec §2.16.4; needs a store with ``transaction()``, i.e. PostgresStore; default False). The response
            is buffered until the commit; 5xx and exceptions are rolled back and therefore retryable.
        transaction_statement_timeout: in transactional mode, PostgreSQL's ``statement_timeout`` for the handler's
            statements on ``state.connection``, float seconds (default 30.0, the default ``lease_ttl``; None: no
            limit). A statement running longer is cancelled: if the handler lets that error out, everything is
            rolled back and the client gets 503 with ``Retry-After``.
        transaction_lock_timeout: in transactional mode, PostgreSQL's ``lock_timeout`` for the handler's statements
            (default 2.0, the default ``store_timeout``; None: no limit), so a contended row is a 503, not a hang.
        transaction_idle_timeout: in transactional mode, ``idle_in_transaction_session_timeout`` (default 60.0;
            None: no limit): the server ends a session left idle inside the transaction (a handler stuck outside
            the database), rolling it back; the commit then fails and the client gets 503. The store's own insert
            and commit run with ``store_timeout`` as their statement and lock timeouts. The three transaction
            timeouts are rounded up to the millisecond and must be > 0 and at most 2**31 - 1 ms (about 24.8 days).

    Raises:
        ValueError: an invalid value, named by its parameter.
        TypeError: a value of the wrong type.
    """

    methods: frozenset[str] = frozenset({"POST", "PATCH"})
    required: bool = False
    lenient_header: bool = True
    max_key_length: int = 255
    min_key_length: int = 1
    key_validator: Callable[[str], bool | Awaitable[bool]] | None = None
    allow_anonymous: bool = False
    anonymous_key_validator: Callable[[str], bool | Awaitable[bool]] = is_uuid4
    namespace: str = "default"
    scope_by_route: bool = False
    fingerprint: FingerprintSpec = field(default_factory=FingerprintSpec)
    retention: float | timedelta = 86_400.0
    lease_ttl: float | timedelta = 30.0
    heartbeat_every: float | timedelta | None = None
    wait_timeout: float | timedelta = 0.0
    retry_after_cap: float | timedelta = 5.0
    release_statuses: frozenset[int] = DEFAULT_RELEASE_STATUSES
    store_5xx: bool = True
    release_on_exception: bool = False
    retryable_exceptions: tuple[type[BaseException], ...] = ()
    reclaim_on_lease_expiry: bool = False
    abandoned_status: int = 500
    max_request_body: int = 10 * 1024 * 1024
    max_stored_body: int = 1024 * 1024
    max_capture_duration: float | timedelta = 300.0
    store_timeout: float | timedelta = 2.0
    completion_attempts: int = 3
    completion_budget: float | timedelta = 2.0
    fail_open: bool = False
    shield_disconnect: bool = True
    replay_header: str = "Idempotent-Replayed"
    mark_first_response: bool = False
    replay_headers_allowed: frozenset[str] = frozenset()
    transactional: bool = False
    transaction_statement_timeout: float | timedelta | None = 30.0
    transaction_lock_timeout: float | timedelta | None = 2.0
    transaction_idle_timeout: float | timedelta | None = 60.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        methods = frozenset(m.upper() for m in self.methods)
        if not methods or not all(isinstance(m, str) and m.isalpha() for m in methods):
            raise ValueError(f"methods must be HTTP method names, got {sorted(self.methods)!r}")
        set_(self, "methods", methods)
        check_int(self.max_key_length, "max_key_length", minimum=1)
        check_int(self.min_key_length, "min_key_length", minimum=1)
        if self.min_key_length > self.max_key_length:
            raise ValueError("min_key_length must be <= max_key_length")
        if self.key_validator is not None and not callable(self.key_validator):
            raise TypeError("key_validator must be callable")
        if not callable(self.anonymous_key_validator):
            raise TypeError("anonymous_key_validator must be callable")
        if not isinstance(self.namespace, str) or not self.namespace:
            raise ValueError("namespace must be a non-empty string")
        if not isinstance(self.fingerprint, FingerprintSpec):
            raise TypeError("fingerprint must be a FingerprintSpec")
        retention = _record_duration(self.retention, "retention")
        lease = _record_duration(self.lease_ttl, "lease_ttl")
        set_(self, "retention", retention)
        set_(self, "lease_ttl", lease)
        heartbeat = to_seconds_or_none(self.heartbeat_every, "heartbeat_every", allow_zero=False)
        if heartbeat is None:
            heartbeat = lease / 3
        if heartbeat >= lease:
            raise ValueError(f"heartbeat_every must be < lease_ttl ({lease}), got {heartbeat}")
        set_(self, "heartbeat_every", heartbeat)
        set_(self, "wait_timeout", to_seconds(self.wait_timeout, "wait_timeout"))
        set_(self, "retry_after_cap", to_seconds(self.retry_after_cap, "retry_after_cap", allow_zero=False))
        for status in self.release_statuses:
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
                raise ValueError(f"release_statuses must be HTTP status codes, got {status!r}")
        set_(self, "release_statuses", frozenset(self.release_statuses))
        if not isinstance(self.retryable_exceptions, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.retryable_exceptions
        ):
            raise TypeError("retryable_exceptions must be a tuple of exception types")
        if not 100 <= check_int(self.abandoned_status, "abandoned_status", minimum=100) <= 599:
            raise ValueError(f"abandoned_status must be an HTTP status code, got {self.abandoned_status}")
        check_int(self.max_request_body, "max_request_body", minimum=0)
        check_int(self.max_stored_body, "max_stored_body", minimum=0)
        set_(
            self,
            "max_capture_duration",
            to_seconds(self.max_capture_duration, "max_capture_duration", allow_zero=False, allow_inf=True),
        )
        store_timeout = to_seconds(self.store_timeout, "store_timeout", allow_zero=False)
        if self.transactional:  # also the statement and lock timeout of the store's insert and commit
            _postgres_duration(store_timeout, "store_timeout")
        set_(self, "store_timeout", store_timeout)
        for name in ("transaction_statement_timeout", "transaction_lock_timeout", "transaction_idle_timeout"):
            value = getattr(self, name)
            set_(self, name, None if value is None else _postgres_duration(value, name))
        check_int(self.completion_attempts, "completion_attempts", minimum=1)
        set_(self, "completion_budget", to_seconds(self.completion_budget, "completion_budget", allow_zero=False))
        name = self.replay_header
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"replay_header must be a header name, got {name!r}")
        set_(self, "replay_headers_allowed", frozenset(h.lower() for h in self.replay_headers_allowed))
        if retention < _MIN_RECOMMENDED_RETENTION:
            logger.warning(
                "idempotency retention of %.0f s is under one hour: AEP-155 asks keys to be honoured for at least "
                "an hour, and a client retrying later will execute again",
                retention,
            )
        if math.isinf(lease):
            raise ValueError("lease_ttl must be finite")


def _record_duration(value: float | timedelta, parameter: str) -> float:
    """``retention`` or ``lease_ttl`` in seconds: > 0 and at most 100 years.

    Raises:
        TypeError, ValueError: naming ``parameter``.
    """
    seconds = to_seconds(value, parameter, allow_zero=False)
    if seconds > _MAX_RECORD_DURATION:
        raise ValueError(f"{parameter} must be at most {_MAX_RECORD_DURATION:.0f} seconds (100 years), got {seconds!r}")
    return seconds


def _postgres_duration(value: float | timedelta, parameter: str) -> float:
    """A duration > 0 that PostgreSQL takes as a timeout setting (at most 2**31 - 1 ms), in seconds.

    Transactional mode sets ``store_timeout`` and the ``transaction_*_timeout`` values on the transaction, so a
    value PostgreSQL would refuse on every request is refused here (the latter whether or not the route is
    transactional, so a route override cannot turn them invalid).

    Raises:
        TypeError, ValueError: naming ``parameter``.
    """
    seconds = to_seconds(value, parameter, allow_zero=False)
    to_units(seconds, parameter, per_second=1000, maximum=_MAX_POSTGRES_MS)
    return seconds


def override_config(base: IdempotencyConfig, overrides: dict[str, Any]) -> IdempotencyConfig:
    """``base`` with a route's overrides (:func:`~stalwart.idempotency.idempotent`), validated like a new config.

    A route that sets its own ``lease_ttl`` but no ``heartbeat_every`` gets the default period for *its* lease
    (``lease_ttl / 3``) unless ``base`` set an explicit one: the normalised base period belongs to the base lease.

    Raises:
        ValueError, TypeError: as :class:`IdempotencyConfig` does for an invalid value.
    """
    if "lease_ttl" in overrides and "heartbeat_every" not in overrides:
        assert isinstance(base.lease_ttl, float)  # normalised by __post_init__
        if base.heartbeat_every == base.lease_ttl / 3:  # the default, derived from the base lease
            overrides = {**overrides, "heartbeat_every": None}
    return replace(base, **overrides)


def check_overrides(overrides: dict[str, Any]) -> None:
    """Validate a route's overrides when :func:`~stalwart.idempotency.idempotent` is applied, not at its first request.

    Every name must be a field of :class:`IdempotencyConfig` (or ``enabled``, a bool) and every value one that some
    configuration accepts; checks that depend on the app-wide settings (``heartbeat_every`` against the lease,
    ``min_key_length`` against ``max_key_length``) are left to :func:`override_config` when the route is first used.

    Raises:
        TypeError: an unknown name, a non-bool ``enabled``, or a value of the wrong type.
        ValueError: a value no configuration accepts, named by its parameter.
    """
    known = {f.name for f in fields(IdempotencyConfig) if f.init}
    for name in overrides:
        if name != "enabled" and name not in known:
            raise TypeError(f"idempotent() got an unknown setting {name!r}; see IdempotencyConfig")
    if not isinstance(overrides.get("enabled", True), bool):
        raise TypeError(f"enabled must be True or False, got {overrides['enabled']!r}")
    probe = {k: v for k, v in overrides.items() if k != "enabled"}
    if "lease_ttl" not in probe:  # any heartbeat is below some lease: the app-wide one decides later
        probe["lease_ttl"] = _MAX_RECORD_DURATION
    if "max_key_length" not in probe and isinstance(probe.get("min_key_length"), int):
        probe["max_key_length"] = max(255, probe["min_key_length"])
    if "retention" not in probe:
        probe["retention"] = 86_400.0
    IdempotencyConfig(**probe)
