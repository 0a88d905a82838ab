"""``ResilientTransport``: the standard HTTP policy around any sync httpx transport.

The twin of :class:`~stalwart.httpx.AsyncResilientTransport` (``_transport.py``), written separately and kept line
for line alike; read one against the other. Sync code cannot be pre-empted, so each attempt's limit is applied by
clamping httpx's own timeouts, and there is no hedging (a thread cannot be cancelled).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from typing import cast

import httpx

from stalwart._breaker import CircuitState
from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._deadline import _current
from stalwart._policy import check_decoratable
from stalwart._registry import Registry
from stalwart._types import NEVER_HANDLED

from ._classify import is_retryable_exception
from ._config import ResilienceConfig
from ._origin import SyncFallback, TransportCore
from ._wire import checked, clamp_timeouts, close_unread_sync, discard_sync, expired, status_error

__all__ = ["ResilientTransport"]

_current_deadline = _current.get  # current_deadline() without its frame (docs/internals.md: the ambient deadline)

_DEFAULT_CONFIG = ResilienceConfig()
_REJECTING = (CircuitState.OPEN, CircuitState.FORCED_OPEN)


class ResilientTransport(TransportCore, httpx.BaseTransport):
    """A sync httpx transport applying the standard HTTP policy around an inner transport.

    The twin of :class:`AsyncResilientTransport` (same arguments, behaviour and defaults; ``fallback`` must be a
    sync callable), for ``httpx.Client(transport=ResilientTransport(...))``. Sync code cannot be pre-empted, so the
    per-attempt limit (``timeout``, or the time left on the ambient deadline) is applied by clamping httpx's
    connect/read/write/pool timeouts to it.

    Raises:
        TypeError: ``config`` is not a ``ResilienceConfig``, ``fallback`` is not a sync callable, or ``transport``
            is not a sync httpx transport (a ``ResilienceConfig`` passed positionally, an async transport).
        ValueError: ``name`` is empty, ``config.hedge`` is set (hedging needs the async transport), or
            ``transport`` is already a ``ResilientTransport`` (or an ``AsyncResilientTransport``).
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        config: ResilienceConfig = _DEFAULT_CONFIG,
        registry: Registry | None = None,
        fallback: SyncFallback | None = None,
        name: str = "http",
        clock: Clock = SYSTEM_CLOCK,
        random: Callable[[], float] = _random.random,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self._setup(config=config, registry=registry, name=name, clock=clock, random=random, wall_clock=wall_clock)
        if config.hedge is not None:
            raise ValueError("hedge: hedging needs AsyncResilientTransport (a thread cannot be cancelled)")
        self.refuse_resilient(transport, "handle_request")
        self._transport = httpx.HTTPTransport() if transport is None else transport
        if fallback is not None and check_decoratable(fallback, self):
            raise TypeError("ResilientTransport needs a sync fallback; use AsyncResilientTransport for an async one")
        self._fallback = fallback
        if fallback is not None:  # keeps the fallback's frame off the path of transports without one
            self.handle_request = self._handle_with_fallback  # type: ignore[method-assign]

    @property
    def transport(self) -> httpx.BaseTransport:
        """The inner transport."""
        return self._transport

    def _handle_with_fallback(self, request: httpx.Request) -> httpx.Response:
        """``handle_request`` when a fallback is configured (installed per instance by ``__init__``)."""
        fallback = cast("SyncFallback", self._fallback)
        try:
            response = type(self).handle_request(self, request)
        except Exception as exc:  # never KeyboardInterrupt, SystemExit, GeneratorExit
            return checked(fallback(request, exc))
        if response.status_code in self._failure_statuses:
            try:
                result = checked(fallback(request, status_error(request, response)))
            except BaseException:
                response.close()
                raise
            if result is not response:
                response.close()
            return result
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` under the policy; return the final response (unclosed) or raise the last error."""
        url = request.url
        try:
            reference = url._uri_reference  # the origin's key without building three bytes objects (first_use)
            origin = self._by_reference[reference.scheme, reference.host, reference.port]
        except (AttributeError, KeyError):
            origin = self.first_use(url)
        breaker = origin.breaker
        budget = origin.budget
        inner = self._transport
        monotonic = self._monotonic
        read = self._read
        timeout = self._timeout
        header = self._attempt_header
        ambient = _current_deadline()
        propagate = None if ambient is None else self._deadline_header  # the time left travels downstream
        if self._plain:  # no operations, no adaptive timeout, no automatic key (one test for the common case)
            bulkhead = origin.bulkhead
            adaptive = key = None
        else:
            operations = self._operations
            bulkhead = origin.bulkhead if operations is None else origin.bulkhead_for(operations, request)
            adaptive = self._adaptive
            key = None if adaptive is None else origin.timeout_key(operations, request)
            if self._auto_key is not None:
                self.add_idempotency_key(request)
        replayable = True
        if self._buffer and not isinstance(request.stream, httpx.ByteStream):
            replayable = isinstance(request.stream, httpx.SyncByteStream)
            if replayable:
                request.read()  # retries resend these very bytes
        attempt = 0
        start = 0.0
        previous = 0.0
        permit = 0
        while True:
            attempt += 1
            limit = timeout if adaptive is None else adaptive.current_limit(key)
            binding = False  # whether the ambient deadline, not the attempt's own timeout, is the limit
            if ambient is not None:
                left = ambient.remaining()
                if left <= 0.0:
                    raise expired(attempt)
                if limit is None or left < limit:
                    limit = left
                    binding = True
            if limit is not None:  # sync code cannot be pre-empted: httpx's timeouts carry the attempt's limit
                clamp_timeouts(request, limit)
            if breaker is not None:
                permit = breaker.acquire()  # CircuitOpenError ends the retries
            # From here on the permit is settled exactly once and the bulkhead slot released exactly once, whatever
            # raises (a clock, a hook, an interrupt): what is still out is noted (`out`, `held`, the header tokens),
            # each note cleared before the step that settles it, and the `finally` settles the rest (the permit
            # without an outcome).
            out = breaker is not None
            held = False
            stamp = sent = None
            try:
                if bulkhead is not None:
                    if not bulkhead.try_acquire():  # a free slot is taken without waiting
                        bulkhead.acquire_sync()
                        held = True
                        if ambient is not None:  # the wait used some of the time left: the limit is read again
                            limit, binding = self.limit_after_wait(ambient, limit, binding, attempt, request)
                    held = True
                # Headers for this attempt only: its number, and the time it may take (`limit`: with an ambient
                # deadline, the time left on it or the attempt's own timeout when smaller).
                if header is not None:
                    stamp = header.stamp(request, attempt)
                if propagate is not None:
                    sent = propagate.stamp(request, cast("float", limit))
                began = monotonic()
                if attempt == 1:
                    start = began
                try:
                    response = inner.handle_request(request)
                    if read:
                        try:
                            response.read()
                        except BaseException:
                            close_unread_sync(response)  # its connection back now, not at collection
                            raise
                except BaseException as exc:
                    if sent is not None:
                        propagate.unstamp(request, sent)  # type: ignore[union-attr]
                        sent = None
                    if stamp is not None:
                        header.unstamp(request, stamp)  # type: ignore[union-attr]
                        stamp = None
                    if held:
                        held = False
                        bulkhead.release()  # type: ignore[union-attr]
                    if isinstance(exc, NEVER_HANDLED):
                        raise  # the permit is released without an outcome
                    now = monotonic()
                    if (  # cut by httpx's timeouts, clamped to the limit: censored, it took at least the limit
                        adaptive is not None
                        and not binding
                        and isinstance(exc, httpx.TimeoutException)
                        and now - began >= cast("float", limit)
                    ):
                        adaptive.record(cast("float", limit), key)
                    transient = is_retryable_exception(exc)
                    if out:
                        out = False
                        if transient:
                            breaker.record_failure(permit, now - began)  # type: ignore[union-attr]
                        else:
                            breaker.release(permit)  # type: ignore[union-attr]
                    if budget is not None and transient:
                        budget.record_failure(attempt == 1)
                    retryable = self.error_retryable(exc, request, replayable=replayable)
                    decision = self.decide(attempt, now - start, ambient, previous, retryable=retryable, response=None)
                    if not decision.retry:
                        self.gave_up(origin, attempt, now - start, decision.reason, exc)
                        raise
                    if breaker is not None and breaker.state in _REJECTING:
                        self.gave_up(origin, attempt, now - start, "circuit_open", exc)
                        raise
                    if budget is not None and not budget.try_acquire_retry():
                        self.budget_refused(origin, budget, attempt, now - start, exc)
                        raise
                    self.scheduled(origin, attempt, decision.delay, decision.reason, exc=exc, elapsed=now - start)
                else:
                    if sent is not None:
                        propagate.unstamp(request, sent)  # type: ignore[union-attr]
                        sent = None
                    if stamp is not None:
                        # Inlined header.unstamp for its common case: the raw entry appended last is popped.
                        if type(stamp) is tuple and (entries := request.headers._list) and entries[-1] is stamp:
                            entries.pop()
                        else:
                            header.unstamp(request, stamp)  # type: ignore[union-attr]
                        stamp = None
                    if held:
                        held = False
                        bulkhead.release()  # type: ignore[union-attr]
                    now = monotonic()
                    if adaptive is not None:
                        adaptive.record(now - began, key)
                    status = response.status_code
                    if out:
                        out = False
                        if status in self._failure_statuses:
                            breaker.record_failure(permit, now - began)  # type: ignore[union-attr]
                        else:
                            breaker.record_success(permit, now - began)  # type: ignore[union-attr]
                    if status not in self._retry_statuses and (
                        self._on_result is None or not self.result_rejected(response)
                    ):
                        if budget is not None:
                            budget.record_success(attempt == 1)
                        return response
                    if budget is not None:
                        budget.record_failure(attempt == 1)
                    retryable = replayable and self.may_resend(request)
                    decision = self.decide(
                        attempt, now - start, ambient, previous, retryable=retryable, response=response
                    )
                    if not decision.retry:
                        self.gave_up(origin, attempt, now - start, decision.reason, None)
                        return response
                    if breaker is not None and breaker.state in _REJECTING:
                        self.gave_up(origin, attempt, now - start, "circuit_open", None)
                        return response
                    if budget is not None and not budget.try_acquire_retry():
                        self.budget_refused(origin, budget, attempt, now - start, None)
                        return response
                    # Closed (its connection back in the pool) before sleeping; the drain is bounded in time.
                    discard_sync(response, self.drain_time(limit, ambient, decision.delay), monotonic)
                    self.scheduled(origin, attempt, decision.delay, decision.reason, exc=None, elapsed=now - start)
            finally:
                try:
                    if held:
                        bulkhead.release()  # type: ignore[union-attr]
                    if sent is not None:
                        propagate.unstamp(request, sent)  # type: ignore[union-attr]
                    if stamp is not None:
                        header.unstamp(request, stamp)  # type: ignore[union-attr]
                finally:
                    if out:
                        breaker.release(permit)  # type: ignore[union-attr]
            previous = decision.backoff_delay
            self._clock.sleep(decision.delay)

    def close(self) -> None:
        """Close the inner transport."""
        self._transport.close()
