"""``AsyncResilientTransport``: the standard HTTP policy around any async httpx transport.

Each request runs a short driver loop in the standard order (DESIGN.md §2)::

    fallback → retry loop → circuit breaker (per origin) → bulkhead (per origin) → per-attempt timeout → inner

* The retry loop is outermost: the breaker sees every attempt, and no bulkhead slot is held during a backoff sleep.
* An open breaker ends the retries at once: ``acquire()`` raises :class:`~stalwart.CircuitOpenError` (a fallback may
  answer it), and when an attempt's failure has just opened the breaker the loop gives up with that attempt's
  outcome instead of sleeping.
* Decisions come from the pure modules: ``_classify`` (methods, statuses, errors, ``Retry-After``) and
  :class:`stalwart._retry_policy.RetryRules` (attempts, backoff, pushback cap, never sleeping past the deadline).

The sync driver (``ResilientTransport``, in ``_sync_transport.py``) is written separately and kept line for line
alike; read one against the other. Hedged requests leave this loop for ``_hedging.send_hedged``. The async driver's
common first attempt runs a lean copy of the loop's steps in ``handle_async_request`` and hands any outcome but a
plain success to the loop (``_send``), which settles it as its own first attempt.
"""

from __future__ import annotations

import asyncio
import random as _random
from asyncio import current_task, get_running_loop
from asyncio import tasks as _tasks
from collections.abc import Awaitable, Callable
from types import FunctionType
from typing import Any, cast

import httpx

from stalwart import _events
from stalwart._breaker import CircuitState
from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._deadline import Deadline, _current, ambient_enforced
from stalwart._exceptions import DeadlineExceeded
from stalwart._policy import check_decoratable
from stalwart._registry import Registry
from stalwart._retry_block import cancellation_requested, raise_cancelled
from stalwart._types import NEVER_HANDLED

from ._classify import is_retryable_exception
from ._config import ResilienceConfig
from ._hedging import send_hedged
from ._origin import AsyncFallback, Origin, TransportCore
from ._watchdog import Watchdog
from ._wire import _SECOND, checked, clamp_timeouts, close_unread_async, discard_async, expired, status_error

__all__ = ["AsyncResilientTransport"]

_DEFAULT_CONFIG = ResilienceConfig()
_REJECTING = (CircuitState.OPEN, CircuitState.FORCED_OPEN)
_ByteStream = httpx.ByteStream
_current_deadline = _current.get  # current_deadline() without its frame (docs/internals.md: the ambient deadline)
# ``asyncio.current_task`` is a Python function before 3.12 (a frame per call, reading this table); the table is
# read directly there. Where it is built in (3.12+), it is called as it is.
_current_tasks: dict[Any, Any] | None = getattr(_tasks, "_current_tasks", None)
if not isinstance(_current_tasks, dict) or not isinstance(current_task, FunctionType):
    _current_tasks = None


class AsyncResilientTransport(TransportCore, httpx.AsyncBaseTransport):
    """An async httpx transport applying the standard HTTP policy around an inner transport.

    Use it as ``httpx.AsyncClient(transport=AsyncResilientTransport(...))``. The inner transport keeps its
    connection pool; ``aclose()`` closes it.

    Args:
        transport: the inner transport (default ``httpx.AsyncHTTPTransport()``); not a resilient transport (one
            policy per request: use that one as it is, or wrap its inner ``.transport``).
        config: the policy (default ``ResilienceConfig()``: the seed's 10 s / 3 attempts / 5 failures for 30 s /
            20 concurrent).
        registry: where the per-origin breakers and bulkheads live (default ``stalwart.registry``); they are named
            ``"{name}:{scheme}://{host}:{port}"``. Transports sharing a registry and a name share them (their
            settings must agree, or the registry raises ``ValueError``).
        fallback: ``(request, exc) -> httpx.Response``, sync or async, answering a request whose call failed:
            an exception (open circuit, full bulkhead, passed deadline, a transport error or timeout once retries
            are over) or a final response with a failure status (5xx by default; ``exc`` is then an
            ``httpx.HTTPStatusError`` carrying that response, closed after the fallback returns). Cancellation is
            never handed to it. Default ``None``: failures propagate.
        name: prefix of the registry names (default ``"http"``).
        clock: monotonic clock for backoff sleeps, durations and deadlines (default: the system clock). The
            per-attempt timer runs on the event loop.
        random: ``() -> float`` in [0, 1) for jitter (default ``random.random``).
        wall_clock: POSIX seconds, to read an HTTP-date ``Retry-After`` from a response without a ``Date`` header
            (default: the system's wall clock).

    Raises:
        TypeError: ``config`` is not a ``ResilienceConfig``, ``fallback`` is not callable, or ``transport`` is not an
            async httpx transport (a ``ResilienceConfig`` passed positionally, a sync transport).
        ValueError: ``name`` is empty, or ``transport`` is already an ``AsyncResilientTransport`` (or a
            ``ResilientTransport``).
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        config: ResilienceConfig = _DEFAULT_CONFIG,
        registry: Registry | None = None,
        fallback: AsyncFallback | None = None,
        name: str = "http",
        clock: Clock = SYSTEM_CLOCK,
        random: Callable[[], float] = _random.random,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self._setup(config=config, registry=registry, name=name, clock=clock, random=random, wall_clock=wall_clock)
        self.refuse_resilient(transport)
        self._transport = httpx.AsyncHTTPTransport() if transport is None else transport
        self._fallback = fallback
        self._fallback_is_async = fallback is not None and check_decoratable(fallback, self)
        self._watchdog: Watchdog | None = None
        if fallback is not None:  # keeps the fallback's frame off the path of transports without one
            self.handle_async_request = self._handle_with_fallback  # type: ignore[method-assign]

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The inner transport."""
        return self._transport

    async def _handle_with_fallback(self, request: httpx.Request) -> httpx.Response:
        """``handle_async_request`` when a fallback is configured (installed per instance by ``__init__``)."""
        try:
            response = await type(self).handle_async_request(self, request)
        except Exception as exc:  # never CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit
            return await self._fall_back(request, exc)
        if response.status_code in self._failure_statuses:
            try:
                result = await self._fall_back(request, status_error(request, response))
            except BaseException:
                await response.aclose()
                raise
            if result is not response:
                await response.aclose()
            return result
        return response

    async def _fall_back(self, request: httpx.Request, exc: BaseException) -> httpx.Response:
        fallback = cast("AsyncFallback", self._fallback)
        if self._fallback_is_async:
            return checked(await cast("Awaitable[httpx.Response]", fallback(request, exc)))
        return checked(fallback(request, exc))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` under the policy; return the final response (unclosed) or raise the last error."""
        url = request.url
        try:
            reference = url._uri_reference  # the origin's key without building three bytes objects (first_use)
            origin = self._by_reference[reference.scheme, reference.host, reference.port]
        except (AttributeError, KeyError):
            origin = self.first_use(url)
        ambient = _current_deadline()
        if not (self._lean and ambient is None and (not self._buffer or isinstance(request.stream, _ByteStream))):
            return await self._send(request, origin, ambient, None)
        loop = get_running_loop()
        watchdog = self._watchdog
        if watchdog is None or watchdog.loop is not loop:
            return await self._send(request, origin, ambient, None)  # creates the watchdog of this loop
        # The lean first attempt: the general loop's first attempt for the common case (no ambient deadline, a fixed
        # timeout, no operations, hedging, body reading or result predicate), the same steps in the same order. A
        # plain success returns here; any other outcome of the attempt (an error, a retryable or failure status) is
        # handed with everything still held (permit, slot, header, watch) to the general loop, which settles it as
        # its own first attempt. Whatever raises, the `finally` settles what is still out, as in the loop.
        # Stalwart's own breaker, bulkhead, attempt header and ratio budget are inlined (Origin.core/slots/pending,
        # TransportCore._first_stamp): the same steps as their methods, without the calls.
        breaker = origin.breaker
        bulkhead = origin.bulkhead
        header = self._attempt_header
        core = origin.core
        if core is not None:
            permit = core.fast_epoch  # CircuitBreaker.acquire
            if permit < 0:
                permit = breaker._acquire_slow()  # type: ignore[union-attr]  # CircuitOpenError ends the request
        else:
            permit = 0 if breaker is None else breaker.acquire()  # CircuitOpenError ends the request
        out = breaker is not None
        slots = origin.slots
        held = False
        stamp: object = None
        task: asyncio.Task[Any] | None = None
        try:
            if bulkhead is not None:
                if slots is None or bulkhead._waiters or not slots:
                    if not bulkhead.try_acquire():
                        await bulkhead.acquire()
                else:
                    try:
                        slots.pop()  # Bulkhead.try_acquire
                    except IndexError:  # another thread took the last slot meanwhile
                        await bulkhead.acquire()
                held = True
            if header is not None:
                first = self._first_stamp
                if (
                    first is not None
                    and (entries := request.headers._list)
                    and header.lower not in map(_SECOND, entries)
                ):
                    entries.append(first)  # AttemptHeader.stamp(request, 1)
                    stamp = first
                else:
                    stamp = header.stamp(request, 1)
            began = self._monotonic()
            task = current_task(loop) if _current_tasks is None else _current_tasks.get(loop)
            cancelling = task.cancelling()  # type: ignore[union-attr]
            due = (began if watchdog.loop_clock else loop.time()) + self._lean_timeout
            watchdog.due[task] = due  # type: ignore[index]
            if due < watchdog.when:
                watchdog.arm(due)
            outcome: httpx.Response | BaseException
            try:
                outcome = await self._transport.handle_async_request(request)
            except BaseException as exc:
                outcome = exc
            else:
                status = outcome.status_code
                if status not in self._unusual:
                    if stamp is not None:
                        if type(stamp) is tuple and (entries := request.headers._list) and entries[-1] is stamp:
                            entries.pop()
                        else:
                            header.unstamp(request, stamp)  # type: ignore[union-attr]
                        stamp = None
                    watched = task
                    task = None
                    if watchdog.due.pop(watched, None) is None:  # type: ignore[arg-type]
                        watched.uncancel()  # type: ignore[union-attr]
                    if held:
                        held = False
                        if slots is not None:
                            slots.append(True)  # Bulkhead.release (the slot is ours: no over-release check)
                            if bulkhead._waiters:  # type: ignore[union-attr]
                                bulkhead._wake()  # type: ignore[union-attr]
                        else:
                            bulkhead.release()  # type: ignore[union-attr]
                    if out:
                        if core is not None and permit == core.quiet_epoch and not _events._installed:
                            out = False
                            core.calls += 1  # CircuitBreaker.record_success when a success changes nothing else
                        else:
                            now = self._monotonic()
                            out = False
                            breaker.record_success(permit, now - began)  # type: ignore[union-attr]
                    pending = origin.pending
                    if pending is not None:  # RatioRetryBudget.record_success(True), dated at the attempt's start
                        if began >= origin.budget._roll_due:  # type: ignore[union-attr]
                            origin.budget._advance(began)  # type: ignore[union-attr]
                        pending.append(None)
                    elif origin.budget is not None:
                        origin.budget.record_success(True)
                    return outcome
            resumed = (outcome, permit, held, stamp, task, cancelling, began, watchdog)
            out = held = False  # handed over: the general loop settles them from here
            stamp = task = None
        finally:
            try:
                if held:
                    bulkhead.release()  # type: ignore[union-attr]
                if stamp is not None:
                    header.unstamp(request, stamp)  # type: ignore[union-attr]
                if task is not None and watchdog.due.pop(task, None) is None:
                    task.uncancel()  # the watchdog fired: its request is withdrawn
            finally:
                if out:
                    breaker.release(permit)  # type: ignore[union-attr]
        return await self._send(request, origin, None, resumed)

    async def _send(
        self,
        request: httpx.Request,
        origin: Origin,
        ambient: Deadline | None,
        resumed: tuple[Any, ...] | None,
    ) -> httpx.Response:
        """The general loop; ``resumed``: a first attempt the lean path started and handed over (its outcome and
        what it still holds), settled here as this loop's first attempt."""
        breaker = origin.breaker
        budget = origin.budget
        inner = self._transport
        monotonic = self._monotonic
        read = self._read
        timeout = self._timeout
        header = self._attempt_header
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
            replayable = isinstance(request.stream, httpx.AsyncByteStream)
            if replayable:
                await request.aread()  # retries resend these very bytes
        if self._hedge is not None and replayable and self.may_resend(request):
            return await send_hedged(self, request, origin, bulkhead, ambient)
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
                    clamp_timeouts(request, left)  # the attempt's own timeout is the watchdog's to enforce
            handed = None
            if resumed is not None:  # the lean path's attempt: it holds the permit already
                handed, permit, held_before, stamp_before, task_before, cancelling, began, dog_before = resumed
                task: asyncio.Task[Any]
                resumed = None
            elif breaker is not None:
                permit = breaker.acquire()  # CircuitOpenError ends the retries
            # From here on the permit is settled exactly once and the bulkhead slot released exactly once, whatever
            # raises (a clock, a hook, a cancellation): what is still out is noted (`out`, `held`, the header
            # tokens, `dog`), each note cleared before the step that settles it, and the `finally` settles the rest
            # (the permit without an outcome).
            out = breaker is not None
            held = False
            stamp = sent = None
            dog: Watchdog | None = None
            try:
                if handed is not None:
                    held = held_before
                    stamp = stamp_before
                    if task_before is not None:
                        task = task_before
                        dog = dog_before  # the watchdog holding the watch (self._watchdog may be another loop's now)
                    start = began
                elif bulkhead is not None:
                    if not bulkhead.try_acquire():  # a free slot is taken without a coroutine
                        await bulkhead.acquire()
                        held = True
                        if ambient is not None:  # the wait used some of the time left: the limit is read again
                            limit, binding = self.limit_after_wait(ambient, limit, binding, attempt, request)
                    held = True
                # Headers for this attempt only: its number, and the time it may take (`limit`: with an ambient
                # deadline, the time left on it or the attempt's own timeout when smaller).
                if handed is None and header is not None:
                    stamp = header.stamp(request, attempt)
                if propagate is not None:
                    sent = propagate.stamp(request, cast("float", limit))
                if handed is None:
                    began = monotonic()
                    if attempt == 1:
                        start = began
                if handed is None and limit is not None and not (binding and ambient_enforced()):
                    # The attempt's own limit; a tighter ambient deadline already enforced by an enclosing async
                    # scope of this task is left to that scope (its expiry is its own error). Inlined Watchdog.watch.
                    loop = get_running_loop()
                    watchdog = self._watchdog
                    if watchdog is None or watchdog.loop is not loop:
                        watchdog = self._watchdog = Watchdog(loop, self._clock is SYSTEM_CLOCK)
                    task = current_task(loop) if _current_tasks is None else _current_tasks.get(loop)  # type: ignore[assignment]
                    cancelling = task.cancelling()
                    due = (began if watchdog.loop_clock else loop.time()) + limit
                    watchdog.due[task] = due
                    dog = watchdog
                    if due < watchdog.when:
                        watchdog.arm(due)
                try:
                    if handed is None:
                        response = await inner.handle_async_request(request)
                        if read:
                            try:
                                await response.aread()
                            except BaseException:
                                await close_unread_async(response)  # its connection back now, not at collection
                                raise
                    elif isinstance(handed, BaseException):
                        raise handed
                    else:
                        response = handed
                except BaseException as exc:
                    if sent is not None:
                        propagate.unstamp(request, sent)  # type: ignore[union-attr]
                        sent = None
                    if stamp is not None:
                        header.unstamp(request, stamp)  # type: ignore[union-attr]
                        stamp = None
                    error: BaseException = exc
                    # Only the cancellation the watchdog caused becomes DeadlineExceeded (as with asyncio.timeout).
                    if dog is not None:
                        fired = dog.due.pop(task, None) is None  # gone from the watch: the watchdog cancelled it
                        dog = None
                        if (
                            fired
                            and task.uncancel() <= cancelling  # withdraws the watchdog's request in every case
                            and isinstance(exc, asyncio.CancelledError)
                        ):
                            error = DeadlineExceeded(f"attempt timed out after {limit:.3f}s", timeout=limit)
                            if adaptive is not None and not binding:
                                adaptive.record(cast("float", limit), key)  # censored: it took at least its limit
                    if held:
                        held = False
                        bulkhead.release()  # type: ignore[union-attr]
                    if isinstance(error, NEVER_HANDLED):
                        raise  # the permit is released without an outcome
                    now = monotonic()
                    transient = is_retryable_exception(error)
                    if out:
                        out = False
                        if transient:
                            breaker.record_failure(permit, now - began)  # type: ignore[union-attr]
                        else:
                            breaker.release(permit)  # type: ignore[union-attr]
                    if budget is not None and transient:
                        budget.record_failure(attempt == 1)
                    if cancellation_requested():  # the attempt swallowed a cancellation: no further attempt
                        raise_cancelled(origin.name, error)
                    retryable = self.error_retryable(error, request, replayable=replayable)
                    decision = self.decide(attempt, now - start, ambient, previous, retryable=retryable, response=None)
                    if not decision.retry:
                        self.gave_up(origin, attempt, now - start, decision.reason, error)
                        if error is exc:
                            raise
                        raise error from exc
                    if breaker is not None and breaker.state in _REJECTING:
                        self.gave_up(origin, attempt, now - start, "circuit_open", error)
                        if error is exc:
                            raise
                        raise error from exc
                    if budget is not None and not budget.try_acquire_retry():
                        self.budget_refused(origin, budget, attempt, now - start, error)
                        if error is exc:
                            raise
                        raise error from exc
                    self.scheduled(origin, attempt, decision.delay, decision.reason, exc=error, elapsed=now - start)
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
                    if dog is not None:
                        fired = dog.due.pop(task, None) is None
                        dog = None
                        if fired:
                            task.uncancel()  # the watchdog fired but the inner transport swallowed the cancellation
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
                    if cancellation_requested():  # the inner transport swallowed a cancellation: no retry
                        await response.aclose()
                        raise_cancelled(origin.name, None)
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
                    await discard_async(response, self.drain_time(limit, ambient, decision.delay), monotonic)
                    self.scheduled(origin, attempt, decision.delay, decision.reason, exc=None, elapsed=now - start)
            finally:
                try:
                    if held:
                        bulkhead.release()  # type: ignore[union-attr]
                    if sent is not None:
                        propagate.unstamp(request, sent)  # type: ignore[union-attr]
                    if stamp is not None:
                        header.unstamp(request, stamp)  # type: ignore[union-attr]
                    if dog is not None and dog.due.pop(task, None) is None:
                        task.uncancel()  # the watchdog fired: its request is withdrawn
                finally:
                    if out:
                        breaker.release(permit)  # type: ignore[union-attr]
            previous = decision.backoff_delay
            await self._clock.asleep(decision.delay)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._transport.aclose()
