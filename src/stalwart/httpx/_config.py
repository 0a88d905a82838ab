"""``ResilienceConfig``: the settings of the standard HTTP policy, validated once at construction."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from stalwart._adaptive import AdaptiveTimeout
from stalwart._backoff import Backoff
from stalwart._config import check_int, to_seconds, to_seconds_or_none
from stalwart._hedge import Hedge, PercentileDelay
from stalwart._retry_policy import RetryBudgetHook

from ._classify import BREAKER_FAILURE_STATUSES, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_METHODS, RETRYABLE_STATUSES
from ._operations import Operation, OperationTable
from ._options import BudgetFactory, PerOriginBudget

__all__ = ["ResilienceConfig"]


DEFAULT_BUDGET = PerOriginBudget()
"""The default ``budget``: ``RetryBudget.ratio(percent=20.0, ttl=10.0, min_per_second=10)`` per origin."""


def _default_backoff() -> Backoff:
    return Backoff.exponential(initial=1.0, multiplier=2.0, max_delay=60.0)


def _statuses(value: Iterable[int], parameter: str) -> frozenset[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{parameter} must be a collection of HTTP status codes, got {value!r}")
    result = frozenset(value)
    for status in result:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"{parameter} must contain HTTP status codes (100-599), got {status!r}")
    return result


def _methods(value: Iterable[str], parameter: str) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{parameter} must be a collection of HTTP method names, got {value!r}")
    result = set()
    for method in value:
        if not isinstance(method, str) or not method or not method.isascii() or not method.isalpha():
            raise ValueError(f"{parameter} must contain HTTP method names, got {method!r}")
        result.add(method.upper())
    return frozenset(result)


def _header(value: str | None, parameter: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{parameter} must be a header name or None, got {value!r}")
    if not value or not value.isascii() or any(c in value for c in ' \t\r\n:()<>@,;\\"/[]?={}'):
        raise ValueError(f"{parameter} must be a valid header name, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """The standard HTTP policy's settings; every duration is ``float`` seconds (a ``timedelta`` is accepted).

    The defaults are the seed's combined client: 10 s per attempt, 3 attempts with exponential backoff from 1 s,
    a breaker opening after 5 consecutive failures for 30 s, 20 concurrent calls per origin.

    Attributes:
        timeout: limit for one attempt, seconds (default ``10.0``; ``None`` for none), or an
            :class:`~stalwart.AdaptiveTimeout` whose estimate is the limit (docs/http-client.md, "Adaptive per-attempt
            timeout"): one estimate per origin (key: the origin's registry name, ``"http:https://api.example.com:443"``)
            or per origin and operation when ``operations`` cover the request (key: the operation's bulkhead name,
            ``"...:443:reads"``); every response records its attempt's duration, and an attempt cut by that limit
            records the limit (a censored sample). In async code the attempt is cancelled and
            :class:`~stalwart.DeadlineExceeded` raised; in the sync driver httpx's connect/read/write/pool timeouts
            are clamped to it. Always clamped further by the ambient deadline.
        max_attempts: attempts in total, including the first (default ``3``; ``1`` disables retries).
        backoff: delay between attempts (default ``Backoff.exponential(initial=1.0, multiplier=2.0,
            max_delay=60.0)`` with full jitter).
        max_retry_after: longest server-requested ``Retry-After`` wait honoured, seconds (default ``60.0``); a longer
            request ends the retries at once with the last response.
        retry_statuses: response statuses retried (default 408, 429, 500, 502, 503, 504).
        retry_methods: methods retried after the request may have reached the server (default GET, HEAD, OPTIONS,
            PUT, DELETE, TRACE). Other methods are retried only when they carry ``idempotency_header``, or when the
            error proves nothing was sent (a connection failure).
        idempotency_header: header making any method retryable (default ``"Idempotency-Key"``; ``None``: never).
        auto_idempotency_key: add ``idempotency_header`` with a fresh UUID4 (a bare token) to every request whose
            method is not in ``retry_methods`` and that has none, once, before the first attempt; every attempt then
            sends the same key, so a POST or PATCH can be retried safely when the server honours the key (what the
            Stripe SDKs do). Default ``False``. Needs ``idempotency_header``.
        on_result: ``(response) -> bool``: a true answer makes a response retryable although its status is not in
            ``retry_statuses`` (e.g. a 200 whose JSON body says "try later"). The body is read first (``on_result``
            implies ``read_response``), so the predicate may call ``response.json()``. Default ``None``. An
            exception it raises propagates.
        rate_limit_reset_header: a header read as server pushback, in delta-seconds, on a retryable response without
            a valid ``Retry-After`` (e.g. ``"RateLimit-Reset"`` from the IETF RateLimit header fields drafts; not
            GitHub's ``X-RateLimit-Reset``, which is an epoch time). Default ``None``: only ``Retry-After``.
        failure_statuses: response statuses the breaker counts as failures (default every 5xx; 4xx never should).
        failure_threshold: consecutive failures that open an origin's breaker (default ``5``).
        success_threshold: successful probes that close it again (default ``3``; at most ``half_open_max_calls``).
        reset_timeout: seconds the breaker stays open before probing (default ``30.0``).
        half_open_max_calls: probes admitted per half-open period (default ``3``).
        max_concurrent: calls in flight per origin (default ``20``).
        max_queue: callers waiting for a slot per origin (default ``100``; ``0``: reject at once when full).
        queue_timeout: longest wait for a slot, seconds (default ``30.0``).
        attempt_header: header carrying the attempt number, ``1`` on the first (default ``"Stalwart-Attempt"``;
            ``None``: not sent).
        deadline_header: header carrying the time the attempt may take to the next service, sent when an ambient
            deadline exists (default ``"Request-Deadline-Ms"``: whole milliseconds, rounded down; ``"grpc-timeout"``
            sends gRPC's format; ``None``: not sent). The value is the attempt's limit: the time left on the
            ambient deadline, or ``timeout`` when that is smaller. See docs/deadlines.md.
        read_response: read the response body inside the attempt (default ``False``), so a connection dropped
            mid-body is an attempt failure that is retried and counted, and the per-attempt timeout and the bulkhead
            slot cover the whole exchange. Off, the transport returns once the headers arrive (streaming stays
            possible) and the body is read afterwards under httpx's read timeout. ``ResilientClient`` turns it on.
        use_breaker: keep a circuit breaker per origin (default ``True``).
        use_bulkhead: keep a bulkhead per origin (default ``True``).
        operations: bulkheads per operation type (docs/http-client.md, "Bulkheads per operation"): a sequence of
            :class:`~stalwart.httpx.Operation` (e.g. ``SEED_OPERATIONS``: search 10, writes 20, reads 50), matched
            in order against each request's method and URL path; the first that covers a request gives it its own
            bulkhead per origin, registered as ``"{origin name}:{operation}"``, used instead of the origin's
            bulkhead. Requests no operation covers use the origin's bulkhead. Default ``()``.
        hedge: hedged requests, async transport only (docs/http-client.md, "Hedging"): a delay in seconds (or a
            ``timedelta``, or a learned ``Hedge.percentile(...)``) after which a request that has not answered is sent
            again, or a :class:`~stalwart.Hedge` (its ``delay`` and ``max_hedged`` are used; the transport classifies
            outcomes itself and hedges draw from the origin's retry budget). Only requests that may be sent more than
            once are hedged (``retry_methods``, or carrying ``idempotency_header``). Default ``None``: no hedging.
        budget: the retry budget (docs/http-client.md, "Retry budget"). Default ``PerOriginBudget()``: one
            ``RetryBudget.ratio(percent=20.0, ttl=10.0, min_per_second=10)`` per origin, named after it, so retries
            to an origin are at most 20 % of its calls over the last 10 s plus 10 per second. Any callable
            ``(name, clock) -> budget`` builds one budget per origin; a budget instance (``RetryBudget``,
            ``RedisRetryBudget``, anything implementing ``record_success``/``record_failure``/
            ``try_acquire_retry``) is shared by every origin of the transport; ``None`` disables the budget.
            When the budget refuses a retry, the request ends at once with its last response or error.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a field is out of range (the message names it), or ``success_threshold >
            half_open_max_calls``.
    """

    timeout: float | timedelta | AdaptiveTimeout | None = 10.0
    max_attempts: int = 3
    backoff: Backoff = field(default_factory=_default_backoff)
    max_retry_after: float | timedelta = 60.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES
    retry_methods: frozenset[str] = IDEMPOTENT_METHODS
    idempotency_header: str | None = IDEMPOTENCY_KEY_HEADER
    failure_statuses: frozenset[int] = BREAKER_FAILURE_STATUSES
    failure_threshold: int = 5
    success_threshold: int = 3
    reset_timeout: float | timedelta = 30.0
    half_open_max_calls: int = 3
    max_concurrent: int = 20
    max_queue: int = 100
    queue_timeout: float | timedelta = 30.0
    attempt_header: str | None = "Stalwart-Attempt"
    deadline_header: str | None = "Request-Deadline-Ms"
    read_response: bool = False
    use_breaker: bool = True
    use_bulkhead: bool = True
    operations: tuple[Operation, ...] = ()
    budget: RetryBudgetHook | BudgetFactory | None = DEFAULT_BUDGET
    auto_idempotency_key: bool = False
    on_result: Callable[[httpx.Response], bool] | None = None
    rate_limit_reset_header: str | None = None
    hedge: Hedge | float | timedelta | PercentileDelay | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.timeout, AdaptiveTimeout):
            if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float | timedelta | None):
                raise TypeError(
                    f"timeout must be seconds, a timedelta, an AdaptiveTimeout or None, got {self.timeout!r}"
                )
            timeout = to_seconds_or_none(self.timeout, "timeout", allow_zero=False, allow_inf=True)
            set_(self, "timeout", None if timeout is None or math.isinf(timeout) else timeout)
        check_int(self.max_attempts, "max_attempts", minimum=1)
        if not isinstance(self.backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff, got {self.backoff!r}")
        set_(self, "max_retry_after", to_seconds(self.max_retry_after, "max_retry_after", allow_inf=True))
        set_(self, "retry_statuses", _statuses(self.retry_statuses, "retry_statuses"))
        set_(self, "retry_methods", _methods(self.retry_methods, "retry_methods"))
        set_(self, "idempotency_header", _header(self.idempotency_header, "idempotency_header"))
        set_(self, "failure_statuses", _statuses(self.failure_statuses, "failure_statuses"))
        check_int(self.failure_threshold, "failure_threshold", minimum=1)
        check_int(self.success_threshold, "success_threshold", minimum=1)
        set_(self, "reset_timeout", to_seconds(self.reset_timeout, "reset_timeout"))
        check_int(self.half_open_max_calls, "half_open_max_calls", minimum=1)
        if self.success_threshold > self.half_open_max_calls:
            raise ValueError(
                f"success_threshold ({self.success_threshold}) must not exceed half_open_max_calls "
                f"({self.half_open_max_calls}): the breaker could never close"
            )
        check_int(self.max_concurrent, "max_concurrent", minimum=1)
        check_int(self.max_queue, "max_queue", minimum=0)
        set_(self, "queue_timeout", to_seconds(self.queue_timeout, "queue_timeout", allow_inf=True))
        set_(self, "attempt_header", _header(self.attempt_header, "attempt_header"))
        set_(self, "deadline_header", _header(self.deadline_header, "deadline_header"))
        for name in ("read_response", "use_breaker", "use_bulkhead", "auto_idempotency_key"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.auto_idempotency_key and self.idempotency_header is None:
            raise ValueError("auto_idempotency_key needs an idempotency_header to send the key in")
        if self.on_result is not None and not callable(self.on_result):
            raise TypeError(f"on_result must be a callable (response) -> bool or None, got {self.on_result!r}")
        set_(self, "rate_limit_reset_header", _header(self.rate_limit_reset_header, "rate_limit_reset_header"))
        operations: object = self.operations
        if isinstance(operations, Operation) or not isinstance(operations, Iterable):
            raise TypeError(f"operations must be a sequence of Operation, got {operations!r}")
        set_(self, "operations", OperationTable(operations).operations)  # validates: types, unique names
        hedge = self.hedge
        if hedge is not None and not isinstance(hedge, Hedge):
            if isinstance(hedge, bool) or not isinstance(hedge, int | float | timedelta | PercentileDelay):
                raise TypeError(f"hedge must be a delay in seconds, a Hedge or None, got {hedge!r}")
            set_(self, "hedge", Hedge(hedge if isinstance(hedge, PercentileDelay) else to_seconds(hedge, "hedge")))
        budget = self.budget
        if budget is not None and not isinstance(budget, RetryBudgetHook) and not callable(budget):
            raise TypeError(f"budget must be a retry budget, a callable (name, clock) -> budget or None: {budget!r}")
