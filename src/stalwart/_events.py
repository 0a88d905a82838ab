"""Instrumentation events and the hook protocol.

Policies describe what they do by emitting frozen event dataclasses to the installed hooks. With no hook installed
:func:`emit` is never reached: drivers test :func:`hooks_installed` (a module-level boolean read) before building an
event, so the cost on the hot path is one global lookup.

Install a hook with :func:`add_hook` (any callable ``(event) -> None``); :class:`LoggingHook` writes events to
the ``stalwart`` logger. A hook that raises is logged and otherwise ignored: instrumentation never breaks a call.

Event names are stable (see docs/events.md):

===================== ======================================================================
event                 emitted when
===================== ======================================================================
RetryScheduled        a retry will happen after ``delay`` seconds
RetryGaveUp           a retrying call stops and lets its last outcome through
RetryBudgetExhausted  a retry was suppressed because the retry budget was spent
HedgeStarted          a hedged call started another attempt (a hedge)
CircuitStateChanged   a circuit breaker changed state (with the reason)
CircuitCallRecorded   a circuit breaker recorded a call's outcome (``success``, ``failure``, ``ignored``)
CircuitRateExceeded   a breaker's failure rate or slow-call rate reached its threshold (it opens)
CallRejected          a call was refused locally (``circuit_open``, ``bulkhead_full``, ``budget``)
DeadlineExpired       a stalwart deadline or timeout cancelled work
IdempotentReplay      a stored response was replayed for a repeated idempotency key
===================== ======================================================================
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "CallRejected",
    "CircuitCallRecorded",
    "CircuitRateExceeded",
    "CircuitStateChanged",
    "DeadlineExpired",
    "Event",
    "HedgeStarted",
    "Hook",
    "IdempotentReplay",
    "LoggingHook",
    "RetryBudgetExhausted",
    "RetryGaveUp",
    "RetryScheduled",
    "add_hook",
    "emit",
    "hooks_installed",
    "remove_hook",
]

logger = logging.getLogger("stalwart")


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A retry is scheduled.

    Attributes:
        name: the retry policy's name.
        attempt: the attempt that just failed (1 for the first call).
        delay: seconds (``float``) the policy will wait before the next attempt.
        reason: ``"backoff"`` (computed) or ``"retry_after"`` (server pushback).
        outcome: the exception, or ``None`` when a result was judged retryable.
        elapsed: seconds since the first attempt started.
    """

    name: str
    attempt: int
    delay: float
    reason: Literal["backoff", "retry_after"]
    outcome: BaseException | None
    elapsed: float


@dataclass(frozen=True, slots=True)
class RetryGaveUp:
    """A retrying call stopped; its last outcome propagates.

    Attributes:
        name: the retry policy's name.
        attempts: attempts made.
        elapsed: seconds since the first attempt started.
        reason: why it stopped: ``"max_attempts"``, ``"max_elapsed"``, ``"deadline"``, ``"retry_after_too_long"``,
            ``"budget"``, ``"not_retryable"`` or ``"stop"`` (a ``stop=`` condition). A ``Hedge`` emits it too.
        outcome: the last exception, or ``None`` for a result.
    """

    name: str
    attempts: int
    elapsed: float
    reason: str
    outcome: BaseException | None


@dataclass(frozen=True, slots=True)
class RetryBudgetExhausted:
    """A retry was suppressed because the retry budget was spent.

    Attributes:
        name: the budget's name.
        attempt: the attempt that failed and would have been retried.
    """

    name: str
    attempt: int


@dataclass(frozen=True, slots=True)
class HedgeStarted:
    """A hedged call started another attempt (a hedge) alongside or after the earlier ones.

    Attributes:
        name: the ``Hedge``'s name, or the origin's registry name for a hedge of the httpx transport.
        attempt: the attempt started (2 for the first hedge).
        elapsed: seconds since the call's first attempt started.
        reason: ``"delay"`` (the delay passed without an answer) or ``"failure"`` (an attempt ended with a handled
            outcome and is replaced at once; ``Hedge`` only).
    """

    name: str
    attempt: int
    elapsed: float
    reason: Literal["delay", "failure"]


@dataclass(frozen=True, slots=True)
class CircuitStateChanged:
    """A circuit breaker changed state.

    Attributes:
        name: the breaker's name.
        from_state: previous state value (``"closed"``, ``"open"``, ``"half_open"``, ...).
        to_state: new state value.
        at: monotonic time of the transition, seconds.
        reason: why: ``"consecutive_failures"``, ``"failure_rate"``, ``"slow_call_rate"``, ``"reset_timeout"``
            (OPEN → HALF_OPEN), ``"probes_failed"``, ``"probes_succeeded"``, ``"max_half_open_wait"`` or
            ``"manual"`` (``reset()``, ``force_open()``, ``transition_to()``, ...).
    """

    name: str
    from_state: str
    to_state: str
    at: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CircuitCallRecorded:
    """A circuit breaker recorded the outcome of a call it admitted (resilience4j's success/error/ignored events).

    Attributes:
        name: the breaker's name.
        outcome: ``"success"``, ``"failure"`` or ``"ignored"`` (cancelled, excluded exception: neither).
        duration: the call's duration in seconds when measured (hooks installed, or slow calls tracked; the
            low-level ``record_*`` API reports what its caller passed), else ``None``.
    """

    name: str
    outcome: Literal["success", "failure", "ignored"]
    duration: float | None


@dataclass(frozen=True, slots=True)
class CircuitRateExceeded:
    """A circuit breaker's failure rate or slow-call rate reached its threshold; a ``CircuitStateChanged`` to
    ``"open"`` follows.

    Attributes:
        name: the breaker's name.
        kind: ``"failure_rate"`` or ``"slow_call_rate"``.
        rate: the rate, percent.
        threshold: the threshold it reached, percent.
    """

    name: str
    kind: Literal["failure_rate", "slow_call_rate"]
    rate: float
    threshold: float


@dataclass(frozen=True, slots=True)
class CallRejected:
    """A call was refused locally without reaching the dependency.

    Attributes:
        name: the breaker's, bulkhead's or budget's name.
        reason: ``"circuit_open"``, ``"bulkhead_full"`` or ``"budget"``.
    """

    name: str
    reason: Literal["circuit_open", "bulkhead_full", "budget"]


@dataclass(frozen=True, slots=True)
class DeadlineExpired:
    """A stalwart deadline or timeout expired and cancelled work.

    Attributes:
        timeout: the limit in seconds that expired, when known.
    """

    timeout: float | None


@dataclass(frozen=True, slots=True)
class IdempotentReplay:
    """A stored response was replayed for a repeated idempotency key.

    Attributes:
        status: the replayed HTTP status code.
        path: the request path (never the key, which may be sensitive).
    """

    status: int
    path: str


Event: TypeAlias = (
    RetryScheduled
    | RetryGaveUp
    | RetryBudgetExhausted
    | HedgeStarted
    | CircuitStateChanged
    | CircuitCallRecorded
    | CircuitRateExceeded
    | CallRejected
    | DeadlineExpired
    | IdempotentReplay
)
Hook: TypeAlias = Callable[[Event], None]
"""A hook receives each event; it must be fast and must not raise (exceptions are logged and dropped)."""

_hooks: tuple[Hook, ...] = ()
_installed = False
_hooks_lock = threading.RLock()  # add/remove are read-modify-write; re-entrant for a hook whose __eq__ adds one


def hooks_installed() -> bool:
    """True when at least one hook is installed (drivers check this before building an event)."""
    return _installed


def add_hook(hook: Hook) -> None:
    """Install ``hook`` for every event emitted in this process (thread-safe).

    Raises:
        TypeError: ``hook`` is not callable.
    """
    global _hooks, _installed
    if not callable(hook):
        raise TypeError(f"hook must be a callable (event) -> None, got {hook!r}")
    with _hooks_lock:
        _hooks = (*_hooks, hook)
        _installed = True


def add_hook_once(hook: Hook) -> None:
    """Install ``hook`` unless it is installed already (compared with ``==``, as :func:`remove_hook` does).

    For hooks that stand for one installation (``OpenTelemetryMetrics.install()``): installing twice would deliver
    each event twice. Thread-safe.

    Raises:
        TypeError: ``hook`` is not callable.
    """
    global _hooks, _installed
    if not callable(hook):
        raise TypeError(f"hook must be a callable (event) -> None, got {hook!r}")
    with _hooks_lock:
        if any(installed == hook for installed in _hooks):
            return
        _hooks = (*_hooks, hook)
        _installed = True


def remove_hook(hook: Hook) -> None:
    """Remove a hook installed with :func:`add_hook`; unknown hooks are ignored.

    Hooks are compared with ``==``, so ``remove_hook(events.append)`` removes ``add_hook(events.append)`` although
    each attribute access builds a new bound-method object. Only the first equal hook is removed. Thread-safe: a hook
    added or removed by another thread at the same moment is neither lost nor brought back.
    """
    global _hooks, _installed
    with _hooks_lock:
        hooks = list(_hooks)
        for index, installed in enumerate(hooks):
            if installed == hook:
                del hooks[index]
                break
        _hooks = tuple(hooks)
        _installed = bool(_hooks)


def emit(event: Event) -> None:
    """Deliver ``event`` to every installed hook; a failing hook is logged and skipped."""
    for hook in _hooks:
        try:
            hook(event)
        except Exception:
            logger.exception("stalwart event hook %r failed on %s", hook, type(event).__name__)


def emit_budget_refusal(budget: str, attempt: int) -> None:
    """Emit what a retry (or hedge) the retry budget refused is: ``RetryBudgetExhausted(budget, attempt)`` and
    ``CallRejected(budget, "budget")`` (the attempt was refused locally, without reaching the dependency).

    Callers check :func:`hooks_installed` first, as for :func:`emit`.
    """
    emit(RetryBudgetExhausted(budget, attempt))
    emit(CallRejected(budget, "budget"))


def _check_level(level: object) -> int:
    if isinstance(level, bool) or not isinstance(level, int | str):
        raise TypeError(f"level must be a logging level (an int or a level name), got {level!r}")
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"level must be a logging level name such as 'INFO' or 'WARNING', got {level!r}")
    return number


class LoggingHook:
    """A hook that logs every event to the ``stalwart`` logger at ``level``.

    Args:
        level: the logging level, an ``int`` (default ``logging.INFO``) or a level name known to :mod:`logging`
            (``"INFO"``, ``"warning"``: any case); the attribute ``level`` holds the ``int``.

    Raises:
        TypeError: ``level`` is neither an ``int`` nor a ``str`` (``bool`` included).
        ValueError: ``level`` is a name ``logging`` does not know.
    """

    __slots__ = ("level",)

    def __init__(self, level: int | str = logging.INFO) -> None:
        self.level = _check_level(level)

    def __call__(self, event: Event) -> None:
        """Log ``event``."""
        logger.log(self.level, "%s", event)
