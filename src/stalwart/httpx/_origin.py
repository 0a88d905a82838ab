"""What the sync and async transports share: construction, per-origin state, classification glue, events and
notes. The driver loops live in ``_transport.py`` (async) and ``_sync_transport.py``; what each attempt does to the
request and its response (stamped headers, clamped timeouts, discarded responses) in ``_wire.py``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import httpx

from stalwart._adaptive import AdaptiveTimeout
from stalwart._breaker import CircuitBreaker
from stalwart._budget import INLINE_RATIO, inline_kind
from stalwart._bulkhead import Bulkhead
from stalwart._clock import Clock
from stalwart._deadline import Deadline
from stalwart._events import RetryGaveUp, RetryScheduled, emit, emit_budget_refusal, hooks_installed
from stalwart._registry import Registry
from stalwart._retry_policy import RetryBudgetHook, RetryDecision, RetryRules, add_give_up_note, give_up_note
from stalwart._retry_testing import current_mode

from ._classify import (
    is_retryable_exception,
    parse_delta_seconds,
    parse_http_date,
    parse_retry_after,
    request_was_not_sent,
)
from ._config import ResilienceConfig
from ._operations import OperationTable, bulkhead_status
from ._wire import AttemptHeader, DeadlineHeader, clamp_timeouts, expired, wall_time

if TYPE_CHECKING:
    from stalwart._hedge import Hedge

__all__ = [
    "AsyncFallback",
    "Origin",
    "OriginKey",
    "SyncFallback",
    "TransportCore",
    "origin_name",
]

SyncFallback: TypeAlias = Callable[[httpx.Request, BaseException], httpx.Response]
"""``(request, exc) -> httpx.Response``: answers a request whose call failed."""

AsyncFallback: TypeAlias = Callable[[httpx.Request, BaseException], httpx.Response | Awaitable[httpx.Response]]
"""A sync or async fallback, for the async transport."""

OriginKey: TypeAlias = tuple[bytes, bytes, int | None]
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_REFERENCE_KEYS = 4096  # bound on the drivers' fast lookup table (beyond it, new origins take the slower path)


class Origin:
    """The state kept per origin (scheme, host, port): its name, breaker, bulkhead, retry budget, and the bulkheads
    of its operations (by operation name), and the keys of its adaptive timeout estimates."""

    __slots__ = ("breaker", "budget", "bulkhead", "core", "keys", "name", "operations", "pending", "slots")

    def __init__(
        self,
        name: str,
        breaker: CircuitBreaker | None,
        bulkhead: Bulkhead | None,
        budget: RetryBudgetHook | None = None,
        operations: dict[str, Bulkhead] | None = None,
        *,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.budget = budget
        self.operations = {} if operations is None else operations
        self.keys = {operation: f"{name}:{operation}" for operation in self.operations}
        # What the async driver's lean first attempt inlines (docs/internals.md, HTTP): the breaker's machine and
        # the bulkhead's free slots when they are exactly stalwart's classes, and the ratio budget's pending
        # deposits when it runs on the transport's clock (``monotonic``); None where the method must be called.
        self.core = breaker._core if type(breaker) is CircuitBreaker else None
        self.slots = bulkhead._permits if type(bulkhead) is Bulkhead else None
        inline = budget is not None and monotonic is not None and inline_kind(budget, monotonic) == INLINE_RATIO
        self.pending: list[None] | None = budget._pending if inline else None  # type: ignore[union-attr]

    def bulkhead_for(self, table: OperationTable, request: httpx.Request) -> Bulkhead | None:
        """The bulkhead of the operation covering ``request``, or the origin's own."""
        operation = table.select(request.method, request.url.path)
        return self.bulkhead if operation is None else self.operations[operation.name]

    def timeout_key(self, table: OperationTable | None, request: httpx.Request) -> str:
        """The key of ``request``'s adaptive timeout estimate: the origin's name, or the name of the bulkhead of the
        operation covering it (``"{origin name}:{operation}"``). Few keys: origins times operations."""
        if table is None:
            return self.name
        operation = table.select(request.method, request.url.path)
        return self.name if operation is None else self.keys[operation.name]


def origin_name(prefix: str, url: httpx.URL) -> str:
    """The registry name of ``url``'s origin: ``"{prefix}:{scheme}://{host}:{port}"``, default ports made explicit
    (``http:https://api.example.com:443``) and IPv6 hosts bracketed."""
    scheme = url.scheme
    host = url.host
    if ":" in host:
        host = f"[{host}]"
    port = url.port or _DEFAULT_PORTS.get(scheme, 0)
    return f"{prefix}:{scheme}://{host}:{port}"


class TransportCore:
    """Construction and helpers shared by ``AsyncResilientTransport`` and ``ResilientTransport``."""

    _config: ResilienceConfig
    _rules: RetryRules
    _buffer: bool
    _registry: Registry
    _name: str
    _clock: Clock
    _monotonic: Callable[[], float]
    _random: Callable[[], float]
    _wall_clock: Callable[[], float]
    _origins: dict[OriginKey, Origin]
    _building: threading.RLock
    _by_reference: dict[tuple[str, str, int | None], Origin]
    _timeout: float | None
    _adaptive: AdaptiveTimeout | None
    _attempt_header: AttemptHeader | None
    _deadline_header: DeadlineHeader | None
    _retry_statuses: frozenset[int]
    _failure_statuses: frozenset[int]
    _read: bool
    _on_result: Callable[[httpx.Response], bool] | None
    _auto_key: str | None
    _hedge: Hedge | None
    _operations: OperationTable | None
    _plain: bool
    _lean: bool
    _unusual: frozenset[int]
    _lean_timeout: float
    _first_stamp: tuple[bytes, bytes, bytes] | None

    @staticmethod
    def refuse_resilient(transport: object, method: str = "handle_async_request") -> None:
        """Check the drivers' ``transport`` argument: ``None`` or an inner transport with ``method``
        (``handle_async_request`` for the async driver, ``handle_request`` for the sync one), not a resilient one.

        Raises:
            TypeError: ``transport`` has no ``method``: a ``ResilienceConfig`` passed positionally (it goes in
                ``config=``), or a sync transport given to the async driver (or the reverse); checked here rather
                than failing with an ``AttributeError`` at the first request.
            ValueError: ``transport`` is an ``AsyncResilientTransport`` or a ``ResilientTransport``: a second policy
                around the first would multiply the attempts (3 x 3 = 9 per call) and give each origin two
                breakers and two bulkheads.
        """
        if transport is not None and not callable(getattr(transport, method, None)):
            hint = " (pass the policy as config=...)" if isinstance(transport, ResilienceConfig) else ""
            raise TypeError(
                f"transport must be an httpx transport with {method}(), got {type(transport).__name__}{hint}"
            )
        if isinstance(transport, TransportCore):
            raise ValueError(
                f"transport: {type(transport).__name__} is already resilient; wrapping it again would multiply the "
                "attempts (3 x 3 = 9) and give each origin two breakers and bulkheads. Use it as it is, or wrap its "
                "inner transport (its .transport)"
            )

    def _setup(
        self,
        *,
        config: ResilienceConfig,
        registry: Registry | None,
        name: str,
        clock: Clock,
        random: Callable[[], float],
        wall_clock: Callable[[], float] | None,
    ) -> None:
        if not isinstance(config, ResilienceConfig):
            raise TypeError(f"config must be a ResilienceConfig, got {config!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if registry is None:
            from stalwart._registry import registry as default_registry  # noqa: PLC0415 - the mutable default

            registry = default_registry
        self._config = config
        self._buffer = config.max_attempts > 1 or config.hedge is not None  # bodies read ahead, to be resent
        self._rules = RetryRules(  # ResilienceConfig stores every duration as float seconds (__post_init__)
            max_attempts=config.max_attempts,
            backoff=config.backoff,
            max_retry_after=cast("float", config.max_retry_after),
        )
        self._registry = registry
        self._name = name
        self._clock = clock
        self._monotonic = clock.monotonic
        self._random = random
        self._wall_clock = wall_time if wall_clock is None else wall_clock
        self._origins = {}
        self._building = threading.RLock()  # an origin is built once, even by threads racing to its first use
        self._by_reference = {}
        timeout = config.timeout
        self._adaptive = timeout if isinstance(timeout, AdaptiveTimeout) else None  # the limit is read per attempt
        self._timeout = None if isinstance(timeout, AdaptiveTimeout) else cast("float | None", timeout)  # normalised
        self._attempt_header = None if config.attempt_header is None else AttemptHeader(config.attempt_header)
        self._deadline_header = None if config.deadline_header is None else DeadlineHeader(config.deadline_header)
        self._retry_statuses = config.retry_statuses
        self._failure_statuses = config.failure_statuses
        self._on_result = config.on_result
        self._read = config.read_response or config.on_result is not None  # the predicate may read the body
        self._auto_key = config.idempotency_header if config.auto_idempotency_key else None
        self._hedge = cast("Hedge | None", config.hedge)
        self._operations = OperationTable(config.operations) if config.operations else None
        self._plain = self._operations is None and self._adaptive is None and self._auto_key is None
        # The async driver's lean first attempt applies (with no ambient deadline, a replayable body): see _transport.
        self._lean = self._plain and self._hedge is None and not self._read and self._timeout is not None
        self._unusual = self._retry_statuses | self._failure_statuses  # statuses that are not a plain success
        # For the lean first attempt: the per-attempt timeout as a float, and the attempt header's raw entry for
        # attempt 1 (None when the header cannot be stamped raw).
        self._lean_timeout = 0.0 if self._timeout is None else self._timeout
        header = self._attempt_header
        self._first_stamp = header.entries[1] if header is not None and header.raw else None

    @property
    def config(self) -> ResilienceConfig:
        """The policy this transport applies."""
        return self._config

    @property
    def registry(self) -> Registry:
        """The registry holding this transport's breakers and bulkheads."""
        return self._registry

    def origin(self, url: str | httpx.URL) -> Origin:
        """The per-origin state for ``url`` (created, and registered, on first use).

        Args:
            url: any absolute URL of the origin, as a ``str`` (``"https://api.example.com"``) or an ``httpx.URL``;
                only its scheme, host and port matter.

        Raises:
            TypeError: ``url`` is neither a ``str`` nor an ``httpx.URL``.
            ValueError: ``url`` has no scheme or no host (``"api.example.com"``, ``"/items"``): it names no origin.
            httpx.InvalidURL: ``url`` is a ``str`` httpx cannot parse.
        """
        if not isinstance(url, httpx.URL):
            if not isinstance(url, str):
                raise TypeError(f"url must be a str or an httpx.URL, got {url!r}")
            url = httpx.URL(url)
        if not url.scheme or not url.host:
            raise ValueError(f"url must be absolute (a scheme and a host) to name an origin, got {str(url)!r}")
        return self.origin_of(url)

    def origin_of(self, url: httpx.URL) -> Origin:
        """:meth:`origin` for a request's URL, unchecked (the drivers' path, on a request's first use of an
        origin)."""
        key = (url.raw_scheme, url.raw_host, url.port)
        state = self._origins.get(key)
        if state is None:
            with self._building:  # re-entrant: a budget factory may look up other origins
                state = self._origins.get(key)
                if state is None:
                    state = self._origins[key] = self._new_origin(url)
        return state

    def first_use(self, url: httpx.URL) -> Origin:
        """The drivers' lookup when their fast one misses: :meth:`origin_of`, then remembered by the key the drivers
        read first, ``(scheme, host, port)`` of httpx's parsed URL (``URL._uri_reference``: normalised like the
        ``raw_*`` properties, as ``str``, without building three ``bytes`` per request). Without that attribute
        (another httpx) every request comes here."""
        state = self.origin_of(url)
        reference = getattr(url, "_uri_reference", None)
        if reference is not None and len(self._by_reference) < _REFERENCE_KEYS:
            self._by_reference[reference.scheme, reference.host, reference.port] = state
        return state

    def _new_origin(self, url: httpx.URL) -> Origin:
        config = self._config
        name = origin_name(self._name, url)
        breaker = bulkhead = None
        if config.use_breaker:
            breaker = self._registry.breaker(
                name,
                failure_threshold=config.failure_threshold,
                success_threshold=config.success_threshold,
                reset_timeout=config.reset_timeout,
                half_open_max_calls=config.half_open_max_calls,
                clock=self._clock,
            )
        if config.use_bulkhead:
            bulkhead = self._registry.bulkhead(
                name,
                max_concurrent=config.max_concurrent,
                max_queue=config.max_queue,
                queue_timeout=config.queue_timeout,
            )
        budget = config.budget
        if budget is not None and not isinstance(budget, RetryBudgetHook):  # a factory: one budget per origin
            budget = budget(name, self._clock) if self._buffer else None  # nothing to budget without retries
            if budget is not None and not isinstance(budget, RetryBudgetHook):
                raise TypeError(f"the budget factory must return a retry budget, got {budget!r}")
        operations = {
            operation.name: self._registry.bulkhead(
                f"{name}:{operation.name}",
                max_concurrent=operation.max_concurrent,
                max_queue=operation.max_queue,
                queue_timeout=operation.queue_timeout,
            )
            for operation in config.operations
        }
        return Origin(name, breaker, bulkhead, budget, operations, monotonic=self._monotonic)

    def bulkheads(self) -> dict[str, Bulkhead]:
        """Every bulkhead of this transport's origins so far, by registry name: each origin's own and its
        operations'."""
        found: dict[str, Bulkhead] = {}
        for origin in self._origins.values():
            if origin.bulkhead is not None:
                found[origin.name] = origin.bulkhead
            for operation, bulkhead in origin.operations.items():
                found[f"{origin.name}:{operation}"] = bulkhead
        return found

    def get_status(self) -> dict[str, dict[str, int]]:
        """The seed's status report: ``{bulkhead name: {"active", "queued", "available"}}`` for every bulkhead of
        this transport (:meth:`bulkheads`; the ``/health/bulkheads`` shape). Origins appear once used (or once
        :meth:`origin` was called for them)."""
        # (a Bulkhead's frozen statistics do not match _operations._Stats' settable attributes for mypy)
        return bulkhead_status(cast("dict[str, Any]", self.bulkheads()))

    def may_resend(self, request: httpx.Request) -> bool:
        """Whether ``request`` may be sent again after it may have reached the server: an idempotent method, or
        an ``Idempotency-Key`` header with a value (the config's ``retry_methods`` / ``idempotency_header``; an
        empty or blank key is no key: a server refuses it, draft-ietf-httpapi-idempotency-key-header §2.1)."""
        config = self._config
        if request.method in config.retry_methods:
            return True
        header = config.idempotency_header
        return header is not None and bool(request.headers.get(header, "").strip())

    def error_retryable(self, error: BaseException, request: httpx.Request, *, replayable: bool) -> bool:
        """Whether an attempt that raised ``error`` may be retried: a transient error, and either nothing was sent
        (safe for every method, the body untouched) or the request may be resent (:meth:`may_resend`) with a body
        that was read ahead (``replayable``)."""
        if not is_retryable_exception(error):
            return False
        if request_was_not_sent(error):
            return True
        return replayable and self.may_resend(request)

    def limit_after_wait(
        self, ambient: Deadline, limit: float | None, binding: bool, attempt: int, request: httpx.Request
    ) -> tuple[float | None, bool]:
        """An attempt's ``(limit, binding)`` read again after it waited for its bulkhead slot: the wait took some of
        the time left on ``ambient``, so when that is now below ``limit`` it becomes the limit (binding) and httpx's
        timeouts of ``request`` are clamped to it. The deadline header and the watchdog use the result.

        Raises:
            DeadlineExceeded: the ambient deadline passed during the wait (nothing is sent).
        """
        left = ambient.remaining()
        if left <= 0.0:
            raise expired(attempt)
        if limit is None or left < limit:
            clamp_timeouts(request, left)
            return left, True
        return limit, binding

    def drain_time(self, limit: float | None, ambient: Deadline | None, delay: float = 0.0) -> float | None:
        """Seconds a discarded response's body may take to drain (``_wire.discard_async/_sync``): the attempt's
        ``limit``, and no more than the time left on ``ambient`` less the ``delay`` slept before the retry, so the
        drain never eats the time the retry was scheduled with. ``None``: no limit (no timeout and no deadline);
        ``0`` or less: no time for it (the response is closed unread)."""
        if ambient is not None:
            left = ambient.remaining() - delay
            if limit is None or left < limit:
                return left
        return limit

    def decide(
        self,
        attempt: int,
        elapsed: float,
        ambient: Deadline | None,
        previous: float,
        *,
        retryable: bool,
        response: httpx.Response | None,
    ) -> RetryDecision:
        """What follows failed attempt ``attempt`` (the rules of :class:`~stalwart._retry_policy.RetryRules`).

        Reads ``Retry-After`` from a retryable ``response``, and honours ``stalwart.testing.testing()`` (fewer
        attempts; with ``no_sleep``, zero delays and server pushback ignored).
        """
        rules = self._rules
        testing = current_mode()
        pushback = response is not None and retryable
        if testing is not None:
            rules = testing.adjust(rules)
            pushback = pushback and not testing.no_sleep
        return rules.decide(
            attempt=attempt,
            elapsed=elapsed,
            deadline_remaining=None if ambient is None else ambient.remaining(),
            previous_delay=previous,
            rng=self._random,
            retry_after=self.retry_after(response) if pushback and response is not None else None,
            retryable=retryable,
        )

    def retry_after(self, response: httpx.Response) -> float | None:
        """The valid ``Retry-After`` delay of ``response`` in seconds, or ``None`` (absent or invalid); without a
        valid one, the config's ``rate_limit_reset_header`` (delta-seconds) when set.

        An HTTP-date is read against the response's own ``Date`` header when it has a valid one (the server's
        clock: immune to clock skew), else against this host's wall clock. The wall clock also resolves the
        two-digit year of an RFC 850 ``Date`` (RFC 9110 §5.6.7).
        """
        headers = response.headers
        value = headers.get("retry-after")
        delay = None
        if value is not None:
            if value.strip(" \t").isdigit():  # delta-seconds: no clock needed
                delay = parse_retry_after(value, 0.0)
            else:
                wall = self._wall_clock()
                date = headers.get("date")
                now = None if date is None else parse_http_date(date.strip(" \t"), wall)
                delay = parse_retry_after(value, wall if now is None else now)
        reset = self._config.rate_limit_reset_header
        if delay is None and reset is not None:
            delay = parse_delta_seconds(headers.get(reset))
        return delay

    def add_idempotency_key(self, request: httpx.Request) -> None:
        """With ``auto_idempotency_key``: give a request of a non-idempotent method that has no key (or an empty
        or blank one) a fresh UUID4, once (every attempt sends it)."""
        header = cast("str", self._auto_key)
        if request.method not in self._config.retry_methods and not request.headers.get(header, "").strip():
            request.headers[header] = str(uuid.uuid4())

    def result_rejected(self, response: httpx.Response) -> bool:
        """Whether the ``on_result`` predicate makes ``response`` (of a status not retried) retryable."""
        on_result = self._on_result
        return on_result is not None and bool(on_result(response))

    def scheduled(
        self, origin: Origin, attempt: int, delay: float, reason: Any, *, exc: BaseException | None, elapsed: float
    ) -> None:
        """Emit ``RetryScheduled`` when hooks are installed."""
        if hooks_installed():
            emit(RetryScheduled(origin.name, attempt, delay, reason, exc, elapsed))

    def budget_refused(
        self, origin: Origin, budget: RetryBudgetHook, attempts: int, elapsed: float, exc: BaseException | None
    ) -> None:
        """The budget refused the retry the rules allowed: emit ``RetryBudgetExhausted``, ``CallRejected``; give up."""
        if hooks_installed():
            emit_budget_refusal(budget.name, attempts)
        self.gave_up(origin, attempts, elapsed, "budget", exc)

    def gave_up(self, origin: Origin, attempts: int, elapsed: float, reason: str, exc: BaseException | None) -> None:
        """Note the give-up on ``exc`` (PEP 678) and emit ``RetryGaveUp``, when the loop ran: a first attempt that is
        simply not retryable (or has no retry allowed) propagates untouched.

        The note is added with :func:`~stalwart._retry_policy.add_give_up_note`, owned by ``origin``: one exception
        object can end many calls (a cached failed connection attempt, an error an inner transport re-raises), and
        each origin keeps one note on it, its latest, instead of one per call."""
        if attempts == 1 and reason in ("not_retryable", "max_attempts"):
            return
        if exc is not None:
            if reason == "circuit_open":
                plural = "attempt" if attempts == 1 else "attempts"
                note = (
                    f"stalwart: {origin.name!r} gave up after {attempts} {plural} over {elapsed:.3f}s "
                    "(the circuit breaker opened)"
                )
            else:
                note = give_up_note(origin.name, attempts, elapsed, reason)  # type: ignore[arg-type]
            add_give_up_note(exc, origin, note)
        if hooks_installed():
            emit(RetryGaveUp(origin.name, attempts, elapsed, reason, exc))
