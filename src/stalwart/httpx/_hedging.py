"""Hedged requests for :class:`~stalwart.httpx.AsyncResilientTransport` ("The Tail at Scale", Dean and Barroso).

A request that may be sent more than once (an idempotent method, or one carrying an ``Idempotency-Key``) with a
body read ahead is sent like this when ``ResilienceConfig.hedge`` is set:

* **The first try is a race.** The primary attempt starts at once; while no attempt has given a final answer,
  another starts every ``hedge.delay`` seconds, up to ``hedge.max_hedged`` extra attempts. Each extra attempt needs
  ``budget.try_acquire_retry()`` from the origin's retry budget (a refusal emits ``RetryBudgetExhausted`` and
  ``CallRejected`` and ends the hedging), and emits ``HedgeStarted(origin name, attempt, elapsed, "delay")`` when it
  starts; none starts once the ambient deadline is closer than the delay, after an attempt was rejected locally
  (open circuit, full bulkhead), or while the bulkhead has no free slot (a hedge never queues).
* **The first final answer wins**: a response that is not retryable (a success, a 4xx), or an exception that is not
  a transient error. The attempts still running are cancelled and awaited, and their responses closed; nothing
  outlives the call. A retryable outcome (a retryable status, a response ``on_result`` rejects, a transient error,
  a per-attempt timeout, a local rejection) is not an answer while another attempt is running: the race waits for
  the others, and when every attempt has failed, the last one to end is the try's outcome. Outcomes are judged in
  the order the attempts ended, also when several end in one turn of the event loop.
* **Retries after a failed race are single attempts**, under the usual rules (backoff or pushback, the budget, the
  deadline, the breaker): a struggling dependency gets no further hedges. ``max_attempts`` counts tries, so the
  hedges of the first try come on top of it (bounded by ``max_hedged`` and the budget).
* Every attempt is its own copy of the request (the same body bytes) with its own attempt number and deadline
  header, and runs the usual chain: breaker → bulkhead → per-attempt timeout → inner transport. Each completed
  attempt is recorded by the breaker and the budget (``first`` for the first attempt of the call to be recorded);
  a cancelled loser records nothing. An attempt whose ambient deadline passed during its bulkhead wait sent
  nothing and records nothing: its ``DeadlineExceeded`` ends the call at once, as in the transport's loops
  (``_Call.was_unsent``). Cancelling the caller cancels every attempt.
* A learned delay (``Hedge.percentile(...)``) records the primary's latency when it wins, and its age when a hedge
  wins (a censored sample), as :class:`stalwart.Hedge` does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import httpx

from stalwart._breaker import CircuitState
from stalwart._bulkhead import Bulkhead
from stalwart._clock import SystemClock
from stalwart._deadline import Deadline, ambient_enforced
from stalwart._events import HedgeStarted, emit, emit_budget_refusal, hooks_installed
from stalwart._exceptions import DeadlineExceeded, Rejected
from stalwart._retry_block import cancellation_requested, raise_cancelled
from stalwart._retry_testing import current_mode
from stalwart._types import NEVER_HANDLED

from ._classify import is_retryable_exception
from ._origin import Origin
from ._wire import clamp_timeouts, close_unread_async, discard_async

if TYPE_CHECKING:
    from stalwart._hedge import Hedge, PercentileDelay

    from ._transport import AsyncResilientTransport

__all__ = ["send_hedged"]

_REJECTING = (CircuitState.OPEN, CircuitState.FORCED_OPEN)
_EARLY = 1e-3  # seconds: the loop may run a timer up to its clock resolution early


class _Call:
    """The state of one hedged call shared by its attempts: numbering and budget bookkeeping."""

    __slots__ = ("ambient", "bulkhead", "key", "number", "origin", "recorded", "request", "transport", "unsent")

    def __init__(
        self,
        transport: AsyncResilientTransport,
        request: httpx.Request,
        origin: Origin,
        bulkhead: Bulkhead | None,
        ambient: Deadline | None,
    ) -> None:
        self.transport = transport
        self.request = request
        self.origin = origin
        self.bulkhead = bulkhead
        self.ambient = ambient
        self.number = 0  # attempts started
        self.recorded = False  # whether an attempt of the call has recorded its outcome in the budget
        self.unsent: list[BaseException] = []  # DeadlineExceeded of attempts whose deadline passed in the queue
        self.key = None if transport._adaptive is None else origin.timeout_key(transport._operations, request)

    def record(self, failure: bool) -> None:
        budget = self.origin.budget
        if budget is not None:
            first = not self.recorded
            self.recorded = True
            if failure:
                budget.record_failure(first)
            else:
                budget.record_success(first)

    async def discard(self, *responses: httpx.Response, delay: float = 0.0) -> None:
        """Close ``responses``, draining their small bodies in the time the attempt's limit and the ambient deadline
        leave (less ``delay``, the backoff before a retry): one allowance for them all
        (:meth:`TransportCore.drain_time`). A cancellation of the caller cuts the drain in progress; every response
        is still closed (the rest without draining) before it is raised."""
        t = self.transport
        monotonic = t._monotonic
        limit = t._timeout if t._adaptive is None else t._adaptive.current_limit(self.key)
        within = t.drain_time(limit, self.ambient, delay)
        end = None if within is None else monotonic() + within
        cancelled: asyncio.CancelledError | None = None
        for response in responses:
            if cancelled is not None:  # the caller has gone: the others are closed without draining
                await response.aclose()
                continue
            try:
                await discard_async(response, None if end is None else end - monotonic(), monotonic)
            except asyncio.CancelledError as exc:  # the response is closed (discard_async's finally); raised after
                cancelled = exc
        if cancelled is not None:
            raise cancelled

    async def judge(self, response: httpx.Response) -> bool:
        """Whether ``response`` is retryable (a retry status, or ``on_result`` rejects it), recorded in the budget.
        ``response`` is closed when the check raises (``on_result``'s error propagates)."""
        t = self.transport
        try:
            rejected = response.status_code in t._retry_statuses or t.result_rejected(response)
        except BaseException:
            await self.discard(response)
            raise
        self.record(rejected)
        return rejected

    def prepare(self) -> tuple[httpx.Request, int, float | None, bool]:
        """A copy of the request for the next attempt, its number, its time limit and whether the ambient deadline
        is that limit.

        Raises:
            DeadlineExceeded: the ambient deadline has passed (nothing is sent).
        """
        t = self.transport
        self.number += 1
        number = self.number
        original = self.request
        copy = httpx.Request(
            original.method,
            original.url,
            headers=original.headers,
            stream=original.stream,
            extensions=dict(original.extensions),
        )
        adaptive = t._adaptive
        limit = t._timeout if adaptive is None else adaptive.current_limit(self.key)
        binding = False
        ambient = self.ambient
        if ambient is not None:
            left = ambient.remaining()
            if left <= 0.0:
                raise DeadlineExceeded(f"the deadline passed before attempt {number} could start", timeout=0.0)
            if limit is None or left < limit:
                limit = left
                binding = True
                clamp_timeouts(copy, left)
            if t._deadline_header is not None:
                t._deadline_header.stamp(copy, limit)
        if t._attempt_header is not None:
            t._attempt_header.stamp(copy, number)
        return copy, number, limit, binding

    async def attempt(self, copy: httpx.Request, number: int, limit: float | None, binding: bool) -> httpx.Response:
        """One attempt: breaker → bulkhead → per-attempt timeout → inner transport. Records the breaker's outcome
        (not the budget's: the caller knows whether the attempt was cancelled as a loser)."""
        t = self.transport
        breaker = self.origin.breaker
        bulkhead = self.bulkhead
        permit = 0 if breaker is None else breaker.acquire()
        # From here on the permit is settled exactly once and the bulkhead slot released exactly once, whatever
        # raises (a clock, a hook, a cancellation): `out` and `held` note what is still out, each cleared before the
        # step that settles it, and the `finally` settles the rest (the permit without an outcome).
        out = breaker is not None
        held = False
        try:
            if bulkhead is not None:
                if not bulkhead.try_acquire():  # a free slot is taken without a coroutine
                    await bulkhead.acquire()
                    held = True
                    if self.ambient is not None:  # the wait used some of the time left: the limit is read again
                        before = limit
                        try:
                            limit, binding = t.limit_after_wait(self.ambient, limit, binding, number, copy)
                        except DeadlineExceeded as exc:
                            self.unsent.append(exc)  # not an attempt's outcome: see was_unsent
                            raise
                        if limit != before and t._deadline_header is not None:
                            t._deadline_header.stamp(copy, cast("float", limit))  # the copy's header, replaced
                held = True
            monotonic = t._monotonic
            began = monotonic()
            own = None if binding and ambient_enforced() else limit  # an enclosing scope enforces the deadline itself
            timer = asyncio.timeout(own)
            try:
                async with timer:
                    response = await t._transport.handle_async_request(copy)
                    if t._read:
                        try:
                            await response.aread()
                        except BaseException:
                            await close_unread_async(response)  # its connection back now, not at collection
                            raise
            except BaseException as exc:
                if held:
                    held = False
                    bulkhead.release()  # type: ignore[union-attr]
                error: BaseException = exc
                if isinstance(exc, TimeoutError) and timer.expired() and own is not None:
                    error = DeadlineExceeded(f"attempt timed out after {own:.3f}s", timeout=own)
                    if t._adaptive is not None and not binding:
                        t._adaptive.record(own, self.key)  # censored: it took at least its limit
                if out and not isinstance(error, NEVER_HANDLED) and is_retryable_exception(error):
                    duration = monotonic() - began
                    out = False
                    breaker.record_failure(permit, duration)  # type: ignore[union-attr]
                if error is exc:
                    raise  # any other outcome: the permit is released without one
                raise error from exc
            if held:
                held = False
                bulkhead.release()  # type: ignore[union-attr]
            duration = monotonic() - began
            if t._adaptive is not None:
                t._adaptive.record(duration, self.key)
            if out:
                out = False
                if response.status_code in t._failure_statuses:
                    breaker.record_failure(permit, duration)  # type: ignore[union-attr]
                else:
                    breaker.record_success(permit, duration)  # type: ignore[union-attr]
            return response
        finally:
            try:
                if held:
                    bulkhead.release()  # type: ignore[union-attr]
            finally:
                if out:
                    breaker.release(permit)  # type: ignore[union-attr]

    def was_unsent(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the ``DeadlineExceeded`` of an attempt whose deadline passed while it queued for its
        bulkhead slot (``TransportCore.limit_after_wait``): nothing was sent. The loops raise it at once, recording
        nothing (as when the deadline passed before the attempt started), and so does the hedged path: it is not a
        transient error of the attempt (no budget failure, no retry decision, no give-up note or event)."""
        return any(unsent is exc for unsent in self.unsent)

    def may_hedge(self) -> bool:
        """Whether one more hedge may start now (and, when the budget refuses it, say so)."""
        t = self.transport
        hedge = t._hedge
        if hedge is None or self.number > hedge.max_hedged:  # started: the primary and number - 1 hedges
            return False
        mode = current_mode()  # stalwart.testing.testing(attempts=...) caps the attempts of the race too
        if mode is not None and mode.attempts is not None and self.number >= mode.attempts:
            return False
        ambient = self.ambient
        if ambient is not None and ambient.remaining() <= 0.0:
            return False
        breaker = self.origin.breaker
        if breaker is not None and breaker.state in _REJECTING:
            return False
        bulkhead = self.bulkhead
        if bulkhead is not None and bulkhead.statistics().available <= 0:
            # A hedge is opportunistic: queued behind its own primary it would send nothing until the primary ended
            # (then acting as a retry without backoff) and take a queue place from other callers. No slot free now:
            # no hedge, and no budget token drawn for it.
            return False
        budget = self.origin.budget
        if budget is not None and not budget.try_acquire_retry():
            if hooks_installed():
                emit_budget_refusal(budget.name, self.number)
            return False
        return True


async def _race(call: _Call) -> tuple[bool, httpx.Response | BaseException]:
    """The first try: the primary and its hedges.

    Returns:
        ``(True, response)`` for the first final answer, or ``(False, outcome)`` when every attempt failed: the
        last outcome to end (a retryable response, a transient error, or a local rejection).

    Raises:
        BaseException: an attempt's exception that is not a transient error (the answer), or the caller's
            cancellation (after every attempt has ended).
    """
    t = call.transport
    hedge = cast("Hedge", t._hedge)
    loop = asyncio.get_running_loop()
    clock = t._clock
    loop_timer = isinstance(clock, SystemClock)  # the loop's own clock: no timer task needed
    learned: PercentileDelay | None = hedge._learned
    running: dict[asyncio.Task[httpx.Response], tuple[int, float]] = {}
    finished: list[asyncio.Task[httpx.Response]] = []  # attempts ended and not judged yet, in the order they ended
    timer: asyncio.Future[Any] | None = None
    due = 0.0  # loop time the next hedge is due (loop_timer)
    hedging = True
    last: httpx.Response | BaseException | None = None
    first = clock.monotonic()  # when the primary starts

    def launch() -> None:
        nonlocal timer, due, hedging
        copy, number, limit, binding = call.prepare()
        started = clock.monotonic()  # read before the task exists: it is in `running` (settle's to end) at once
        task = loop.create_task(call.attempt(copy, number, limit, binding))
        task.add_done_callback(finished.append)  # before asyncio.wait's own callback: in the list once it wakes us
        running[task] = (number, started)
        if number > 1 and hooks_installed():
            emit(HedgeStarted(call.origin.name, number, started - first, "delay"))
        if call.number > hedge.max_hedged:
            hedging = False  # every hedge allowed has started
            return
        delay = hedge.delay  # the timer restarts at every start
        if loop_timer:
            due = loop.time() + delay
        else:
            timer = asyncio.ensure_future(clock.asleep(delay))

    async def keep(outcome: httpx.Response | BaseException | None) -> None:
        nonlocal last
        previous, last = last, outcome  # kept first: a cancellation while closing the previous one cannot lose it
        if isinstance(previous, httpx.Response):
            await call.discard(previous)

    async def settle(winner: asyncio.Task[httpx.Response] | None) -> None:
        """Cancel and await every other attempt and the timer; close what they answered."""
        losers = [task for task in running if task is not winner]
        waiting: list[asyncio.Future[Any]] = [*losers]
        if timer is not None:
            waiting.append(timer)
        for task in waiting:
            task.cancel()
        cancelled: BaseException | None = None
        while pending := [task for task in waiting if not task.done()]:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:  # remembered: the clean-up finishes first
                cancelled = exc
                for task in pending:  # passed on: an attempt that swallowed its cancellation gets another
                    task.cancel()
        running.clear()
        answered = [task.result() for task in losers if not task.cancelled() and task.exception() is None]
        if answered:
            await call.discard(*answered)
        if cancelled is not None:
            raise cancelled

    try:
        launch()
        while running:
            wait: set[asyncio.Future[Any]] = set(running)
            timeout = None
            if hedging:
                if loop_timer:
                    timeout = max(0.0, due - loop.time())
                elif timer is not None:
                    wait.add(timer)
            done, _ = await asyncio.wait(wait, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            fired = timer is not None and timer in done
            if fired:
                timer = None
            # In the order the attempts ended: the first answer to end wins; when none answers, the last outcome to
            # end is the try's (as the retry loop's last attempt is).
            while finished:
                task = finished.pop(0)
                number, started = running.pop(task)
                if task.cancelled():  # not by us: never swallowed
                    raise asyncio.CancelledError
                exc = task.exception()
                if exc is not None and call.was_unsent(exc):
                    raise exc  # the deadline passed before it was sent: the call ends, as in the loops
                if exc is None:
                    response = task.result()
                    if not await call.judge(response):
                        if learned is not None:
                            now = clock.monotonic()
                            if number == 1:
                                learned.record(now - started)
                            for other, other_started in running.values():
                                if other == 1:  # a hedge won: the primary took at least this long
                                    learned.record(now - other_started)
                        try:
                            await settle(task)
                        except BaseException:
                            await call.discard(response)
                            raise
                        finally:
                            await keep(None)  # a failed attempt's response kept meanwhile is closed
                        return True, response
                    await keep(response)
                elif isinstance(exc, Rejected):
                    hedging = False  # refused locally: start nothing more, let the others answer
                    await keep(exc)
                elif not isinstance(exc, NEVER_HANDLED) and is_retryable_exception(exc):
                    call.record(True)
                    await keep(exc)
                else:
                    raise exc  # the answer
            if hedging and running and (fired or (loop_timer and loop.time() + _EARLY >= due)):
                hedging = call.may_hedge()  # the delay passed without an answer
                if hedging:
                    launch()
    except BaseException:
        try:
            await settle(None)
        finally:
            if isinstance(last, httpx.Response):
                await call.discard(last)
        raise
    await settle(None)  # the timer
    return False, cast("httpx.Response | BaseException", last)


async def send_hedged(
    transport: AsyncResilientTransport,
    request: httpx.Request,
    origin: Origin,
    bulkhead: Bulkhead | None,
    ambient: Deadline | None,
) -> httpx.Response:
    """Send a request that may be hedged: a race for the first try, then single-attempt retries under the rules.

    Returns the final response, or raises the last error (with a note), like the transport's own loop.
    """
    t = transport
    call = _Call(t, request, origin, bulkhead, ambient)
    monotonic = t._monotonic
    start = monotonic()
    previous = 0.0
    tries = 0
    budget = origin.budget
    while True:
        tries += 1
        outcome: httpx.Response | BaseException
        if tries == 1:
            final, outcome = await _race(call)
            if final:
                return cast("httpx.Response", outcome)
            if isinstance(outcome, Rejected):
                raise outcome
        else:
            copy, number, limit, binding = call.prepare()
            try:
                outcome = await call.attempt(copy, number, limit, binding)
            except BaseException as exc:
                if not is_retryable_exception(exc) or call.was_unsent(exc):  # an answer, a rejection or a cancellation
                    raise  # (or the deadline passed before it was sent)
                call.record(True)
                outcome = exc
            else:
                if not await call.judge(outcome):
                    return outcome
        if cancellation_requested():  # an attempt swallowed a cancellation: no further attempt
            if isinstance(outcome, httpx.Response):
                await outcome.aclose()
                raise_cancelled(origin.name, None)
            raise_cancelled(origin.name, outcome)
        now = monotonic()
        attempts = call.number
        if isinstance(outcome, BaseException):
            retryable = t.error_retryable(outcome, request, replayable=True)
            decision = t.decide(tries, now - start, ambient, previous, retryable=retryable, response=None)
        else:
            decision = t.decide(tries, now - start, ambient, previous, retryable=True, response=outcome)
        reason: str | None = None if decision.retry else decision.reason
        breaker = origin.breaker
        if reason is None and breaker is not None and breaker.state in _REJECTING:
            reason = "circuit_open"
        if reason is None and budget is not None and not budget.try_acquire_retry():
            if hooks_installed():
                emit_budget_refusal(budget.name, attempts)
            reason = "budget"
        if reason is not None:
            if isinstance(outcome, BaseException):
                t.gave_up(origin, attempts, now - start, reason, outcome)
                raise outcome
            t.gave_up(origin, attempts, now - start, reason, None)
            return outcome
        if isinstance(outcome, BaseException):
            t.scheduled(origin, attempts, decision.delay, decision.reason, exc=outcome, elapsed=now - start)
        else:
            await call.discard(outcome, delay=decision.delay)  # bounded: the retry keeps its time
            t.scheduled(origin, attempts, decision.delay, decision.reason, exc=None, elapsed=now - start)
        previous = decision.backoff_delay
        await t._clock.asleep(decision.delay)
