"""The retry policy: sync and async drivers around the pure decision of :mod:`stalwart._retry_policy`.

The success path is one clock read and a ``try`` around the call; the loop machinery (the ambient deadline, the
decision, events, sleeps) runs only after a retryable failure. Sync and async loops are written separately and read
line by line against each other.
"""

from __future__ import annotations

import logging
import random as _random
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar, overload

from ._backoff import Backoff
from ._clock import SYSTEM_CLOCK, Clock
from ._config import to_seconds, to_seconds_or_none
from ._deadline import current_deadline
from ._events import RetryGaveUp, RetryScheduled, emit, emit_budget_refusal, hooks_installed
from ._policy import Policy, check_decoratable, refuse_coroutine, refuse_if_not_awaited
from ._retry_block import Attempts, cancellation_requested, raise_cancelled
from ._retry_policy import (
    DEFAULT_BACKOFF,
    DelayReason,
    GiveUpReason,
    RetryBudgetHook,
    RetryDecision,
    RetryRules,
    add_give_up_note,
    give_up_note,
)
from ._retry_testing import current_mode
from ._retry_wrap import wrap_async, wrap_sync
from ._stop import StopCondition
from ._types import NEVER_HANDLED, ExceptionSpec, compile_exception_spec

__all__ = ["Retry"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("stalwart")

DEFAULT_MAX_ATTEMPTS = 3
UNLIMITED_ATTEMPTS = sys.maxsize  # ``stop`` given without ``max_attempts``: the stop condition decides


class Retry(Policy):
    """Retry a call that fails transiently, with backoff and jitter, within the attempt, time and deadline limits.

    Usable as a decorator on sync and async functions (``@Retry(on=httpx.TransportError)``), as
    ``await retry.run(fn, *args, **kwargs)`` and as ``retry.call(fn, *args, **kwargs)``, and inside a
    :class:`~stalwart.Pipeline`. The policy is immutable and may be shared; per-call state lives in the call.

    Args:
        on: what to retry: an exception type, a tuple of types, or a predicate ``(exc) -> bool``. Required: the
            seed's retry caught every exception, which retries bugs. ``CancelledError``, ``KeyboardInterrupt``,
            ``SystemExit``, ``GeneratorExit`` and :class:`~stalwart.Rejected` (an open circuit, a full bulkhead)
            are never retried, whatever ``on`` says: a ``CircuitOpenError`` ends the retries at once.
        max_attempts: attempts in total, including the first (``>= 1``); default ``3``, or no limit of its own when
            ``stop`` is given (then the stop condition decides; an explicit ``max_attempts`` still applies too).
        backoff: the delay schedule; default ``Backoff.exponential()`` (1, 2, 4, ... s capped at 60 s, full
            jitter; the AWS "Exponential Backoff and Jitter" article).
        max_elapsed: seconds (or ``timedelta``) since the first attempt started after which no attempt starts;
            ``None`` (default) leaves the ambient deadline as the only time limit.
        on_result: ``(result) -> bool``; a true answer makes the result retryable. When the attempts run out, the
            last result is returned.
        budget: a shared retry budget (:class:`~stalwart.RetryBudget`), or ``None``; when it refuses a retry the
            call ends with its last outcome.
        max_retry_after: the longest server-requested delay honoured, seconds; a longer request ends the retries at
            once with the last outcome; default ``60.0``; ``math.inf`` honours any finite request.
        retry_after: ``(exception or result) -> float | timedelta | None``, the server-requested delay in seconds
            (e.g. from a ``Retry-After`` header; any real number, ``Decimal`` or ``timedelta``). Used instead of the
            backoff delay when valid; negative, NaN or non-numeric values are ignored; an infinite request
            (``math.inf``, a number too large for a float) gives up like one above ``max_retry_after``; an
            extractor that raises is logged and ignored.
        min_attempt_time: seconds an attempt needs to be worth starting: a retry is abandoned when less than
            ``delay + min_attempt_time`` is left on the ambient deadline; default ``0.0``.
        stop: for power users, a stop condition built from :class:`stalwart.stop`
            (``stop.after_attempt(5) | stop.after_elapsed(10.0)``, ``&``, ``stop.when(predicate)``), checked after
            each retryable failure in addition to the limits above; default ``None``.
        name: the name in events and exception notes; default ``"retry"``.
        clock: the monotonic clock used for elapsed time and sleeping (tests pass ``stalwart.testing.FakeClock``).
        random: uniform floats in [0, 1) for jitter; default ``random.random``.

    Stopping: before each sleep, the retry gives up at once (with the last error, not a timeout later) when the
    next attempt would start at or after the ambient deadline (:func:`~stalwart.current_deadline`) or after
    ``max_elapsed``. When it gives up on an exception, that exception propagates unchanged, with a PEP 678 note
    saying how many attempts were made over how long and why it stopped.

    Events (when a hook is installed): ``RetryScheduled`` before each sleep, ``RetryGaveUp`` when a call that failed
    is not retried further (except for a first attempt that is simply not retryable), ``RetryBudgetExhausted``.

    Raises:
        TypeError: an argument has the wrong type (at construction), or a generator function is decorated.
        ValueError: an invalid value, naming the parameter (at construction).
    """

    __slots__ = ("_budget", "_clock", "_name", "_on_result", "_random", "_retry_after", "_rules", "_should_retry")

    def __init__(
        self,
        *,
        on: ExceptionSpec,
        max_attempts: int | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        max_elapsed: float | timedelta | None = None,
        on_result: Callable[[Any], bool] | None = None,
        budget: RetryBudgetHook | None = None,
        max_retry_after: float | timedelta = 60.0,
        retry_after: Callable[[Any], float | timedelta | None] | None = None,
        min_attempt_time: float | timedelta = 0.0,
        stop: StopCondition | None = None,
        name: str = "retry",
        clock: Clock = SYSTEM_CLOCK,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._should_retry = compile_exception_spec(on, parameter="on")
        if max_attempts is None:
            max_attempts = DEFAULT_MAX_ATTEMPTS if stop is None else UNLIMITED_ATTEMPTS
        self._rules = RetryRules(
            max_attempts=max_attempts,
            backoff=backoff,
            max_elapsed=to_seconds_or_none(max_elapsed, "max_elapsed", allow_zero=False),
            max_retry_after=to_seconds(max_retry_after, "max_retry_after", allow_inf=True),
            min_attempt_time=to_seconds(min_attempt_time, "min_attempt_time"),
            stop=stop,
        )
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a callable (result) -> bool or None, got {on_result!r}")
        if retry_after is not None and not callable(retry_after):
            raise TypeError(f"retry_after must be a callable (outcome) -> float | None or None, got {retry_after!r}")
        if budget is not None and not isinstance(budget, RetryBudgetHook):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must implement the Clock protocol, got {clock!r}")
        if not callable(random):
            raise TypeError(f"random must be a callable () -> float, got {random!r}")
        self._on_result = on_result
        self._retry_after = retry_after
        self._budget = budget
        self._name = name
        self._clock = clock
        self._random = random

    # Read-only views of the configuration.
    @property
    def name(self) -> str:
        """The name used in events and notes."""
        return self._name

    @property
    def rules(self) -> RetryRules:
        """The pure stopping and delay rules (``max_attempts``, ``backoff``, ``max_elapsed``, ``max_retry_after``)."""
        return self._rules

    @property
    def max_attempts(self) -> int:
        """Attempts in total, including the first (``sys.maxsize`` when only ``stop`` limits them)."""
        return self._rules.max_attempts

    @property
    def backoff(self) -> Backoff:
        """The delay schedule."""
        return self._rules.backoff

    @property
    def budget(self) -> RetryBudgetHook | None:
        """The retry budget, if any."""
        return self._budget

    def __repr__(self) -> str:
        r = self._rules
        return (
            f"Retry(name={self._name!r}, max_attempts={r.max_attempts}, backoff={r.backoff!r}, "
            f"max_elapsed={r.max_elapsed!r}, max_retry_after={r.max_retry_after!r}, budget={self._budget!r}"
            + ("" if r.stop is None else f", stop={r.stop!r}")
            + ")"
        )

    def attempts(self) -> Attempts:
        """The block form, for code that is not one function call (stamina's ``retry_context`` is the model)::

            for attempt in retry.attempts():          # or: async for attempt in retry.attempts():
                with attempt:                         #     async with attempt: (or with attempt:)
                    response = client.get(url)

        The ``with`` block suppresses a retryable exception and the loop decides, by the same rules as the other
        forms, whether to sleep and run the block again or to re-raise the last exception (with its note). A block
        that completes ends the loop; a non-retryable exception propagates from the block. ``on_result`` does not
        apply (there is no result). Each call of ``attempts()`` starts a new retrying call.
        """
        return Attempts(self)

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is one this policy retries (``on``, minus cancellation, exits and ``Rejected``)."""
        return self._should_retry(exc)

    # ------------------------------------------------------------------ entry points
    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the sync function ``fn(*args, **kwargs)``, retrying it per this policy; return its result.

        Raises:
            TypeError: ``fn`` returned a coroutine (an ``async def`` function belongs in :meth:`run`).
        """
        start = self._clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            if not self._should_retry(e):
                raise
            failure = e
        else:
            if type(result) is CoroutineType:
                refuse_coroutine(result, self, fn)
            on_result = self._on_result
            if on_result is None or not on_result(result):
                if self._budget is not None:
                    self._budget.record_success(True)
                return result
            return self._retry_sync(fn, args, kwargs, start, None, result)  # type: ignore[no-any-return]
        return self._retry_sync(fn, args, kwargs, start, failure, None)  # type: ignore[no-any-return]

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await the coroutine function ``fn(*args, **kwargs)``, retrying it per this policy; return its result.

        Raises:
            TypeError: ``fn`` returned something that is not awaitable (a sync function belongs in :meth:`call`);
                raised at once, whatever ``on`` says: calling ``fn`` again would not make its result awaitable.
        """
        start = self._clock.monotonic()
        awaitable: Any = fn  # until fn returns
        try:
            awaitable = fn(*args, **kwargs)
            result: T = await awaitable
        except BaseException as e:
            refuse_if_not_awaited(awaitable, fn, self, e)
            if not self._should_retry(e):
                raise
            failure = e
        else:
            on_result = self._on_result
            if on_result is None or not on_result(result):
                if self._budget is not None:
                    self._budget.record_success(True)
                return result
            return await self._retry_async(fn, args, kwargs, start, None, result)  # type: ignore[no-any-return]
        return await self._retry_async(fn, args, kwargs, start, failure, None)  # type: ignore[no-any-return]

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async); the wrapper keeps ``fn``'s signature for type checkers.

        Without ``on_result`` the wrapper is specialised (:mod:`stalwart._retry_wrap`): a clock read and a ``try``
        around the call, plus one ``record_success`` call with a budget.

        Raises:
            TypeError: ``fn`` is a generator or async-generator function.
        """
        is_async = check_decoratable(fn, self)
        if self._on_result is not None:
            return super().__call__(fn)
        if is_async:
            return wrap_async(self, fn)
        return wrap_sync(self, fn)

    # ------------------------------------------------------------------ the loops (after a retryable failure)
    def _retry_sync(  # noqa: PLR0917 - positional on purpose: called from the hot wrappers
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        start: float,
        exc: BaseException | None,
        result: Any,
    ) -> Any:
        budget = self._budget
        should_retry = self._should_retry
        on_result = self._on_result
        sleep = self._clock.sleep
        if budget is not None:
            budget.record_failure(True)
        attempt = 1
        previous = 0.0
        while True:
            decision = self._decide(attempt, start, previous, exc, result)
            if not decision.retry:
                return self._give_up(decision.reason, attempt, start, exc, result)  # type: ignore[arg-type]
            previous = decision.backoff_delay
            if decision.delay > 0.0:  # time.sleep(0) is a system call that only gives up the CPU
                sleep(decision.delay)
            attempt += 1
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                if isinstance(e, NEVER_HANDLED):
                    raise
                exc, result = e, None
                retryable = should_retry(e)
            else:
                exc = None
                retryable = on_result is not None and bool(on_result(result))
            if not retryable:
                if exc is None:
                    if budget is not None:
                        budget.record_success(False)
                    return result
                return self._give_up("not_retryable", attempt, start, exc, None)
            if budget is not None:
                budget.record_failure(False)

    async def _retry_async(  # noqa: PLR0917 - positional on purpose: called from the hot wrappers
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        start: float,
        exc: BaseException | None,
        result: Any,
    ) -> Any:
        budget = self._budget
        should_retry = self._should_retry
        on_result = self._on_result
        asleep = self._clock.asleep
        if budget is not None:
            budget.record_failure(True)
        attempt = 1
        previous = 0.0
        while True:
            if cancellation_requested():  # the attempt swallowed a cancellation: no further attempt
                raise_cancelled(self._name, exc)
            decision = self._decide(attempt, start, previous, exc, result)
            if not decision.retry:
                return self._give_up(decision.reason, attempt, start, exc, result)  # type: ignore[arg-type]
            previous = decision.backoff_delay
            await asleep(decision.delay)
            attempt += 1
            awaitable: Any = fn  # until fn returns
            try:
                awaitable = fn(*args, **kwargs)
                result = await awaitable
            except BaseException as e:
                if isinstance(e, NEVER_HANDLED):
                    raise
                refuse_if_not_awaited(awaitable, fn, self, e)
                exc, result = e, None
                retryable = should_retry(e)
            else:
                exc = None
                retryable = on_result is not None and bool(on_result(result))
            if not retryable:
                if exc is None:
                    if budget is not None:
                        budget.record_success(False)
                    return result
                return self._give_up("not_retryable", attempt, start, exc, None)
            if budget is not None:
                budget.record_failure(False)

    # ------------------------------------------------------------------ shared by both loops (no I/O, no awaits)
    def _decide(
        self, attempt: int, start: float, previous: float, exc: BaseException | None, result: Any
    ) -> RetryDecision:
        """Ask the rules what follows failed attempt ``attempt``; consult the budget; emit ``RetryScheduled``.

        The decision runs user code (a ``stop.when`` predicate, the budget, the clock, the random source) outside
        any ``except`` block: an exception it raises propagates with the attempt's exception as its
        ``__context__``, as one raised by an ``on`` predicate does, instead of hiding the call's own error.
        """
        try:
            return self._decide_unguarded(attempt, start, previous, exc, result)
        except BaseException as error:
            if exc is not None and error is not exc and error.__context__ is None:
                error.__context__ = exc
            raise

    def _decide_unguarded(
        self, attempt: int, start: float, previous: float, exc: BaseException | None, result: Any
    ) -> RetryDecision:
        elapsed = self._clock.monotonic() - start
        ambient = current_deadline()
        rules = self._rules
        retry_after = None
        extract = self._retry_after
        testing = current_mode()
        if testing is not None:
            rules = testing.adjust(rules)
            if testing.no_sleep:
                extract = None
        if extract is not None:
            try:
                retry_after = extract(result if exc is None else exc)
            except Exception:
                logger.exception("stalwart: retry %r: the retry_after extractor failed; using the backoff", self._name)
        decision = rules.decide(
            attempt=attempt,
            elapsed=elapsed,
            deadline_remaining=None if ambient is None else ambient.remaining(),
            previous_delay=previous,
            rng=self._random,
            retry_after=retry_after,
        )
        if decision.retry:
            budget = self._budget
            if budget is not None and not budget.try_acquire_retry():
                if hooks_installed():
                    emit_budget_refusal(budget.name, attempt)
                return RetryDecision(False, 0.0, "budget", previous)
            if hooks_installed():
                reason: DelayReason = "retry_after" if decision.reason == "retry_after" else "backoff"
                emit(RetryScheduled(self._name, attempt, decision.delay, reason, exc, elapsed))
        return decision

    def _give_up(
        self, reason: GiveUpReason, attempts: int, start: float, exc: BaseException | None, result: Any
    ) -> Any:
        """End the call: return the last result, or raise the last exception with a note."""
        self._report_give_up(reason, attempts, start, exc)
        if exc is None:
            return result
        raise exc

    def _report_give_up(self, reason: GiveUpReason, attempts: int, start: float, exc: BaseException | None) -> None:
        """Emit ``RetryGaveUp`` and add the PEP 678 note to ``exc`` (if any)."""
        elapsed = self._clock.monotonic() - start
        if hooks_installed():
            emit(RetryGaveUp(self._name, attempts, elapsed, reason, exc))
        if exc is not None:
            add_give_up_note(exc, self, give_up_note(self._name, attempts, elapsed, reason))
