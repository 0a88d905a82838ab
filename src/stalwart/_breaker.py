"""The circuit breaker's drivers: :class:`CircuitBreaker` (sync and async) around the pure ``BreakerMachine``.

The driver reads the clock, takes the lock around each state-machine call, classifies outcomes (``on``,
``exclude``, ``on_result``), raises :class:`~stalwart.CircuitOpenError`, and logs and emits the transitions the
machine queues. The common cases take no lock: a permit in CLOSED is one attribute read, a success in CLOSED with no
failure counted is one read and one increment, and a rejection during the open period is one clock read and one
attribute read before the (fresh) exception is raised.

Low-level permit API (docs/internals.md), for drivers that classify outcomes themselves, such as the httpx
transport: ``permit = breaker.acquire()`` (raises ``CircuitOpenError``), then exactly one of
``breaker.record_success(permit, duration)``, ``breaker.record_failure(permit, duration)`` or
``breaker.release(permit)`` (the call ended without an outcome: cancelled, excluded exception).

A permit is always handed back, whatever raises between ``acquire`` and the outcome (resilience4j issue #2324, Polly
issue #1979: a lost HALF_OPEN permit is a probe slot gone for the whole period, and the breaker stuck there):

* each of ``record_success``, ``record_failure`` and ``release`` settles its permit before anything that may raise
  runs (an event hook raising a ``BaseException``, which ``emit`` lets through); when the clock read it needs
  fails, it hands the permit back without an outcome. Either way, once one of them was called the permit is
  settled, even if it raises: do not hand it back a second time;
* ``acquire`` hands the permit back itself when publishing the transition it made (OPEN → HALF_OPEN) raises;
* ``call``, ``run`` and the decorator wrappers (``_breaker_wrap.py``) hand it back when the clock read for the
  call's start fails, and when classifying the outcome raises (a clock read, or an ``on``/``exclude``/
  ``on_result`` predicate raising): the call then has no outcome and that exception propagates, chained to the
  call's own exception (``__context__``) when there is one.

(A ``KeyboardInterrupt`` raised by a signal handler between two bytecodes of this code, rather than in the call or
a hook, is the one case left: no pure-Python code can close that window.)
"""

from __future__ import annotations

import logging
import random as _random
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar, overload

from . import _events
from ._breaker_link import attach, shared_machine
from ._breaker_settings import (
    BreakerSettings,
    CircuitBreakerConfig,
    CircuitState,
    CircuitStatistics,
    OpenDurationSchedule,
    Permit,
    Transition,
)
from ._breaker_state import BreakerMachine
from ._breaker_wrap import decorate
from ._clock import SYSTEM_CLOCK, Clock
from ._events import CallRejected, CircuitCallRecorded, CircuitRateExceeded, CircuitStateChanged, emit
from ._exceptions import CircuitOpenError, Rejected
from ._policy import Policy, refuse_coroutine, refuse_if_not_awaited
from ._types import NEVER_HANDLED, ExceptionPredicate, ExceptionSpec, compile_exception_spec, is_never_handled
from ._windows import TimeWindow, Window

__all__ = ["CircuitBreaker", "CircuitBreakerConfig", "CircuitState", "CircuitStatistics", "Permit"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("stalwart")

_NOT_COUNTED: tuple[type[BaseException], ...] = (*NEVER_HANDLED, Rejected)
"""Outcomes that never count: cancellation, interpreter exit, and local rejections (an inner bulkhead, ...)."""


def not_counted(exc: BaseException) -> bool:
    """Whether ``exc`` is an outcome that never counts (:data:`_NOT_COUNTED`), also as an exception group: one
    holding a cancellation or an interpreter exit (:func:`~stalwart._types.is_never_handled`), or made only of
    local rejections."""
    if isinstance(exc, _NOT_COUNTED):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return is_never_handled(exc) or exc.split(Rejected)[1] is None
    return False


_LOG_LEVELS = {
    CircuitState.OPEN: logging.ERROR,
    CircuitState.FORCED_OPEN: logging.ERROR,
    CircuitState.HALF_OPEN: logging.WARNING,
    CircuitState.DISABLED: logging.WARNING,
    CircuitState.METRICS_ONLY: logging.WARNING,
    CircuitState.CLOSED: logging.INFO,
}


class CircuitBreaker(Policy):
    """A circuit breaker: stop calling a dependency that keeps failing, and probe it before trusting it again.

    Usable as a decorator on sync or async functions, through ``call``/``run``, or through the low-level permit
    API (``acquire``/``record_success``/``record_failure``/``release``). One instance is shared by every caller
    of the dependency, from threads and asyncio tasks alike.

    Args:
        name: the breaker's name (in errors, events, logs and the health JSON).
        failure_threshold: consecutive failures that open the breaker (default 5; the seed's value).
        success_threshold: successful probes that close it from HALF_OPEN (default 3; ≤ ``half_open_max_calls``).
        reset_timeout: seconds (``float`` or ``timedelta``) the breaker stays OPEN before admitting probes (default
            30.0), or a ``Backoff`` for a growing open period on repeated openings (reset by a clean close).
        half_open_max_calls: probes admitted per HALF_OPEN period in total, however many callers race (default 3).
        window: ``None`` (default) for the consecutive-failure model, or ``CountWindow(size)`` /
            ``TimeWindow(seconds)`` for the rate models, which open the breaker when the failure rate or the
            slow-call rate over the window is at least its threshold.
        failure_rate_threshold: percent in (0, 100] (default 50.0; rate models). In HALF_OPEN the probes of a
            rate model are judged as a window of ``half_open_max_calls`` calls against the same thresholds.
        minimum_calls: calls a rate model needs in its window before it judges (default 100; a ``CountWindow``
            smaller than that judges once full).
        slow_call_duration: seconds (``float`` or ``timedelta``) from which a call counts as slow, or ``None``
            (default; rate models only). A call still running after that long counts as slow before it ends.
        slow_call_rate_threshold: percent in (0, 100] of slow calls that opens the breaker (default 100.0).
        max_half_open_wait: seconds a HALF_OPEN period may last once all its probes are taken before the breaker
            re-opens (bounds a hung probe), or ``None`` (default).
        on: exceptions that count as failures: a type, a tuple of types or a predicate (default ``Exception``).
            An exception that ``on`` does not match counts as a success (the dependency answered).
        exclude: exceptions that are neither success nor failure; their permit is returned (default none).
            ``Rejected`` errors, cancellation and interpreter exit are always excluded, also inside an exception
            group (a group holding one of the latter, or made only of ``Rejected`` errors).
        on_result: ``(result) -> bool``; true marks a returned value as a failure (e.g. an HTTP 503 response).
            A predicate (``on``, ``exclude``, ``on_result``) that raises gives the call no outcome: its permit is
            returned and the predicate's exception propagates, chained to the call's own exception.
        critical: the health endpoint answers 503 while this breaker is open (default ``False``).
        store: a :class:`~stalwart._breaker_link.CircuitStore` sharing the breaker's state with other processes
            (``stalwart.redis.RedisCircuitStore``), or ``None`` (default) to keep it in this process. With a store,
            outcomes are batched and the state is refreshed in the background: no call waits on the store, and
            the breaker decides locally while the store cannot be reached.
        clock: the monotonic clock (default: the system clock).
        random: ``() -> float`` in [0, 1) for the jitter of a ``Backoff`` used as ``reset_timeout``.

    Raises:
        TypeError: a parameter has the wrong type (``store`` not a ``CircuitStore``).
        ValueError: a parameter is out of range (named in the message), ``success_threshold >
            half_open_max_calls``, or the store cannot use ``name``.
    """

    __slots__ = (
        "_core",
        "_exclude",
        "_lock",
        "_monotonic",
        "_on",
        "_on_result",
        "_plain",
        "_timed",
        "_window_now",
        "config",
        "critical",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        success_threshold: int = 3,
        reset_timeout: float | timedelta | OpenDurationSchedule = 30.0,
        half_open_max_calls: int = 3,
        window: Window | None = None,
        failure_rate_threshold: float = 50.0,
        minimum_calls: int = 100,
        slow_call_duration: float | timedelta | None = None,
        slow_call_rate_threshold: float = 100.0,
        max_half_open_wait: float | timedelta | None = None,
        on: ExceptionSpec = Exception,
        exclude: ExceptionSpec = (),
        on_result: Callable[[Any], bool] | None = None,
        critical: bool = False,
        store: object | None = None,
        clock: Clock = SYSTEM_CLOCK,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a callable (result) -> bool, got {on_result!r}")
        settings = BreakerSettings(
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
            reset_timeout=reset_timeout,  # type: ignore[arg-type]  # timedelta is normalised by BreakerSettings
            half_open_max_calls=half_open_max_calls,
            max_half_open_wait=max_half_open_wait,  # type: ignore[arg-type]
            window=window,
            failure_rate_threshold=failure_rate_threshold,
            minimum_calls=minimum_calls,
            slow_call_duration=slow_call_duration,  # type: ignore[arg-type]
            slow_call_rate_threshold=slow_call_rate_threshold,
        )
        self.name = name
        self.critical = bool(critical)
        self._on: ExceptionPredicate = compile_exception_spec(on, parameter="on")
        self._exclude: ExceptionPredicate | None = (
            None if exclude == () else compile_exception_spec(exclude, parameter="exclude", exclude_rejected=False)
        )
        self._on_result = on_result
        self._timed = settings.slow_call_duration is not None
        self._window_now = isinstance(window, TimeWindow)
        self._plain = on_result is None
        self._monotonic = clock.monotonic
        self._lock = threading.Lock()
        shared = None if store is None else shared_machine(store, settings, now=clock.monotonic(), random=random)
        self._core = BreakerMachine(settings, now=clock.monotonic(), random=random) if shared is None else shared
        self.config = CircuitBreakerConfig(
            failure_threshold=settings.failure_threshold,
            success_threshold=settings.success_threshold,
            reset_timeout=settings.reset_timeout,
            half_open_max_calls=settings.half_open_max_calls,
            window=window,
            failure_rate_threshold=settings.failure_rate_threshold,
            minimum_calls=minimum_calls,
            slow_call_duration=settings.slow_call_duration,
            slow_call_rate_threshold=settings.slow_call_rate_threshold,
            max_half_open_wait=settings.max_half_open_wait,
            on=on,
            exclude=exclude,
            on_result=on_result,
            critical=self.critical,
            store=store,
            clock=clock,
            random=random,
        )
        if shared is not None:  # last: from here on the store's thread may sync and publish
            attach(
                store,
                name,
                shared,
                lock=self._lock,
                publish=self._publish,
                monotonic=clock.monotonic,
            )

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._core.state.value!r})"

    @property
    def state(self) -> CircuitState:
        """The current state (may move OPEN → HALF_OPEN only when a caller asks for a permit)."""
        return self._core.state

    # --- events --------------------------------------------------------------------------------------------------

    def _publish(self, changes: list[Transition]) -> None:
        name = self.name
        for before, after, at, reason, rate in changes:
            if rate is None:
                logger.log(_LOG_LEVELS[after], "circuit breaker %r: %s -> %s (%s)", name, before, after, reason)
            else:
                logger.log(
                    _LOG_LEVELS[after], "circuit breaker %r: %s -> %s (%s %.1f%%)", name, before, after, reason, rate
                )
            if _events._installed:
                if rate is not None:  # the rate that reached its threshold: "failure_rate" or "slow_call_rate"
                    settings = self._core.settings
                    if reason == "failure_rate":
                        emit(CircuitRateExceeded(name, "failure_rate", rate, settings.failure_rate_threshold))
                    else:
                        emit(CircuitRateExceeded(name, "slow_call_rate", rate, settings.slow_call_rate_threshold))
                emit(CircuitStateChanged(name, before.value, after.value, at, reason))

    def _window_success(self, permit: Permit) -> None:
        """A success of a rate model in CLOSED/METRICS_ONLY (``permit == window_epoch`` when read)."""
        core = self._core
        window = core.window
        lock = self._lock
        lock.acquire()  # not `with`: this is the hot path of the rate models, and `with` costs twice as much
        try:
            if permit == core.window_epoch and window is not None:
                if window.add_success(self._monotonic() if self._window_now else 0.0):
                    core.judge(self._monotonic())
            else:  # the breaker changed state meanwhile
                core.success(permit, self._monotonic())
        finally:
            lock.release()
        if core.changes:
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            changes = self._core.take_changes()
        if changes is not None:
            self._publish(changes)

    # --- low-level permit API ------------------------------------------------------------------------------------

    def acquire(self) -> Permit:
        """Ask to make a call; returns a permit to hand back to exactly one of ``record_success``,
        ``record_failure`` or ``release``.

        Raises:
            CircuitOpenError: the breaker refuses the call (a fresh exception carrying ``retry_after``).
        """
        permit = self._core.fast_epoch
        if permit >= 0:
            return permit
        return self._acquire_slow()

    def _acquire_slow(self) -> Permit:
        core = self._core
        now = self._monotonic()
        until = core.reject_until
        if now < until:  # inside the open period: no lock needed to refuse
            if _events._installed:
                emit(CallRejected(self.name, "circuit_open"))
            raise CircuitOpenError(self.name, until - now)
        with self._lock:
            permit = core.acquire(now)
            retry_after = core.retry_after(now) if permit is None else None
            changes = core.take_changes()
        if changes is not None:
            try:
                self._publish(changes)
            except BaseException:  # a hook raised (emit lets a BaseException through): the caller gets no permit
                if permit is not None:
                    self._give_back(permit)
                raise
        if permit is None:
            if _events._installed:
                emit(CallRejected(self.name, "circuit_open"))
            raise CircuitOpenError(self.name, retry_after)
        return permit

    def record_success(self, permit: Permit, duration: float = 0.0) -> None:
        """Record that the call made under ``permit`` succeeded; ``duration`` in seconds (for slow-call rules)."""
        self._success(permit, duration)

    def record_failure(self, permit: Permit, duration: float = 0.0) -> None:
        """Record that the call made under ``permit`` failed; ``duration`` in seconds."""
        self._failure(permit, duration)

    def release(self, permit: Permit) -> None:
        """The call made under ``permit`` ended without an outcome (cancelled, excluded): return the permit."""
        self._give_back(permit)
        if _events._installed:
            emit(CircuitCallRecorded(self.name, "ignored", None))

    def _give_back(self, permit: Permit) -> None:
        """Return ``permit`` with no outcome and no event (nothing here raises)."""
        core = self._core
        if permit != core.fast_epoch:  # nothing is held for a permit granted without bookkeeping
            with self._lock:
                core.release(permit)

    def is_failure(self, exc: BaseException) -> bool:
        """Whether ``exc`` counts as a failure under the ``on``/``exclude`` rules (never for cancellation,
        interpreter exit or ``Rejected``, also inside an exception group)."""
        if not_counted(exc):
            return False
        exclude = self._exclude
        return self._on(exc) and not (exclude is not None and exclude(exc))

    # --- outcomes ------------------------------------------------------------------------------------------------
    # ``duration`` is ``None`` when the call was not timed (no hook installed, slow calls not tracked). Each of these
    # settles its permit (outcome recorded, or handed back when the clock fails) before anything that may raise.

    def _success(self, permit: Permit, duration: float | None) -> None:
        core = self._core
        if permit == core.quiet_epoch:
            core.calls += 1
        else:
            try:
                now = self._monotonic()
            except BaseException:
                self._give_back(permit)
                raise
            with self._lock:
                if permit == core.window_epoch and not self._timed:
                    core.window_success(permit, now)
                else:
                    core.success(permit, now, 0.0 if duration is None else duration)
                changes = core.take_changes()
            if changes is not None:
                self._publish(changes)
        if _events._installed:
            emit(CircuitCallRecorded(self.name, "success", duration))

    def _failure(self, permit: Permit, duration: float | None) -> None:
        core = self._core
        try:
            now = self._monotonic()
        except BaseException:
            self._give_back(permit)
            raise
        with self._lock:
            core.failure(permit, now, 0.0 if duration is None else duration)
            changes = core.take_changes()
        if changes is not None:
            self._publish(changes)
        if _events._installed:
            emit(CircuitCallRecorded(self.name, "failure", duration))

    def _record_exception(self, permit: Permit, exc: BaseException, start: float | None) -> None:
        """Settle ``permit`` for a call that raised ``exc`` (called inside the caller's ``except`` block)."""
        try:
            duration = None if start is None else self._monotonic() - start
            if not_counted(exc):
                failed: bool | None = None
            else:
                exclude = self._exclude
                failed = None if exclude is not None and exclude(exc) else self._on(exc)
        except BaseException:  # the clock or a predicate raised: no outcome; its exception has `exc` as context
            self.release(permit)
            raise
        if failed is None:
            self.release(permit)
        elif failed:
            self._failure(permit, duration)
        else:
            self._success(permit, duration)

    def _record_result(self, permit: Permit, result: object, start: float | None) -> None:
        """Settle ``permit`` for a call that returned ``result``."""
        on_result = self._on_result
        try:
            duration = None if start is None else self._monotonic() - start
            failed = on_result is not None and bool(on_result(result))
        except BaseException:  # the clock or the predicate raised: no outcome
            self.release(permit)
            raise
        if failed:
            self._failure(permit, duration)
        else:
            self._success(permit, duration)

    # --- policy entry points -------------------------------------------------------------------------------------
    # The hot paths below are repeated in ``_breaker_wrap.decorate``; keep them in step.

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the sync function ``fn(*args, **kwargs)`` through the breaker.

        Raises:
            CircuitOpenError: the breaker refused the call (``fn`` was not called).
            TypeError: ``fn`` returned a coroutine (an ``async def`` function belongs in :meth:`run`).
        """
        core = self._core
        permit = core.fast_epoch
        if permit < 0:
            permit = self._acquire_slow()
        try:
            start = self._monotonic() if self._timed or _events._installed else None
        except BaseException:
            self._give_back(permit)
            raise
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record_exception(permit, exc, start)
            raise
        if type(result) is CoroutineType:  # nothing was protected: no outcome, and refuse it
            self.release(permit)
            refuse_coroutine(result, self, fn)
        if start is None and self._plain:
            if permit == core.quiet_epoch:
                core.calls += 1
                return result
            if permit == core.window_epoch:
                self._window_success(permit)
                return result
        self._record_result(permit, result, start)
        return result

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await the coroutine function ``fn(*args, **kwargs)`` through the breaker.

        Raises:
            CircuitOpenError: the breaker refused the call (``fn`` was not called).
            TypeError: ``fn`` returned something that is not awaitable (a sync function belongs in :meth:`call`);
                not counted as a failure: the permit is returned without an outcome.
        """
        core = self._core
        permit = core.fast_epoch
        if permit < 0:
            permit = self._acquire_slow()
        try:
            start = self._monotonic() if self._timed or _events._installed else None
        except BaseException:
            self._give_back(permit)
            raise
        awaitable: Any = fn  # until fn returns (a function is not awaitable: told apart below)
        try:
            awaitable = fn(*args, **kwargs)
            result: T = await awaitable
        except BaseException as exc:
            try:
                refuse_if_not_awaited(awaitable, fn, self, exc)
            except TypeError:
                self._give_back(permit)  # a usage error: no outcome for the dependency
                raise
            self._record_exception(permit, exc, start)
            raise
        if start is None and self._plain:
            if permit == core.quiet_epoch:
                core.calls += 1
                return result
            if permit == core.window_epoch:
                self._window_success(permit)
                return result
        self._record_result(permit, result, start)
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async); same behaviour as ``call``/``run``, with the hot path inlined.

        Raises:
            TypeError: ``fn`` is a generator or async-generator function.
        """
        return decorate(self, fn)

    # --- statistics and manual control ---------------------------------------------------------------------------

    def statistics(self) -> CircuitStatistics:
        """A consistent snapshot of the breaker's state and counts.

        Like a call, reading the statistics applies the rules at the current time: a time window drops the outcomes
        that have left it, which may open the breaker.
        """
        core = self._core
        now = self._monotonic()
        with self._lock:
            calls, failed, slow = core.counts(now)  # first: it may change the state
            failure_rate, slow_call_rate = core.rates(now)
            state = core.state
            running = core.inflight.overdue if core.inflight is not None else 0
            consecutive = core.failures if state is CircuitState.CLOSED or state is CircuitState.METRICS_ONLY else 0
            stats = CircuitStatistics(
                name=self.name,
                state=state,
                calls=calls,
                failure_count=failed,
                success_count=calls - failed - running,
                slow_call_count=slow,
                consecutive_failures=consecutive,
                failure_rate=failure_rate,
                slow_call_rate=slow_call_rate,
                retry_after=core.retry_after(now),
                half_open_probes=core.probes if state is CircuitState.HALF_OPEN else 0,
                openings=core.openings,
            )
            changes = core.take_changes()
        if changes is not None:
            self._publish(changes)
        return stats

    def transition_to(self, state: CircuitState | str) -> None:
        """Move to ``state`` now (manual control); outcomes of calls already running are then ignored.

        Raises:
            ValueError: ``state`` is not a :class:`CircuitState` value.
        """
        try:
            target = CircuitState(state)
        except ValueError:
            names = ", ".join(repr(s.value) for s in CircuitState)
            raise ValueError(f"state must be a CircuitState or one of {names}, got {state!r}") from None
        core = self._core
        now = self._monotonic()
        with self._lock:
            core.transition_to(target, now)
            changes = core.take_changes()
        if changes is not None:
            self._publish(changes)

    def reset(self) -> None:
        """Close the breaker and forget its counts and open-period backoff."""
        self.transition_to(CircuitState.CLOSED)

    def force_open(self) -> None:
        """Reject every call (``CircuitOpenError`` with ``retry_after=None``) until ``reset()`` or another
        ``transition_to``."""
        self.transition_to(CircuitState.FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call and record nothing until ``reset()`` or another ``transition_to``."""
        self.transition_to(CircuitState.DISABLED)
