"""Deadlines: an absolute instant on the monotonic clock, carried through the call stack in a context variable.

A deadline scope (``with deadline(2.0):`` / ``async with deadline(2.0):``) sets the *ambient deadline* for the code
inside it. Nested scopes take the minimum: an inner scope can shorten the time left, never extend it. The clock
starts when the scope is entered. Policies read the ambient deadline with :func:`current_deadline` and never sleep
or wait past it; the httpx transport sends what is left of it to the next service.

In async code the scope also enforces the deadline, as trio's ``fail_after`` does: when it expires the task is
cancelled and the scope raises :class:`~stalwart.DeadlineExceeded` (a :class:`TimeoutError`). Only the
cancellation the scope caused is converted; a cancellation from outside propagates untouched. In sync code the
scope cannot pre-empt running code: it sets the ambient deadline that stalwart's policies (and the httpx
transport's timeouts) respect.

Internally, an async scope that enforces a deadline (a ``deadline`` scope, a :class:`~stalwart.Timeout`) also
records itself in a second context variable, so that a nested scope whose limit is looser than an already enforced
ambient deadline schedules nothing: the enclosing scope's expiry is that scope's own error. A nested scope does
enforce a tighter ambient deadline that nobody enforces in this task (set by a sync scope, or inherited by a child
task).

Deadline arithmetic follows gRPC: between processes a deadline travels as a *relative* budget, so clock skew between
hosts does not matter.
"""

from __future__ import annotations

import asyncio
import math
from asyncio import current_task, get_running_loop
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from ._clock import SYSTEM_CLOCK, Clock
from ._config import check_clock, to_float, to_seconds
from ._events import DeadlineExpired, emit, hooks_installed
from ._exceptions import DeadlineExceeded

__all__ = ["Deadline", "current_deadline", "deadline", "remaining_time", "without_deadline"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute instant on a monotonic clock.

    Attributes:
        at: the instant, in seconds on ``clock.monotonic()`` (``float``; ``math.inf``: never, ``-math.inf``: passed).
        clock: the clock ``at`` is measured on (default: the system clock).

    Raises:
        TypeError: ``at`` is not a number (``bool`` included), or ``clock`` has no ``monotonic()``.
        ValueError: ``at`` is NaN.
    """

    at: float
    clock: Clock = SYSTEM_CLOCK

    def __post_init__(self) -> None:
        at = self.at
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise TypeError(f"at must be an instant in seconds on the clock (a number), got {at!r}")
        at = to_float(at)
        if math.isnan(at):  # a NaN deadline would be neither expired nor have time left
            raise ValueError("at must be an instant in seconds on the clock, got NaN")
        object.__setattr__(self, "at", at)
        check_clock(self.clock)

    @classmethod
    def after(cls, seconds: float | timedelta, *, clock: Clock = SYSTEM_CLOCK) -> Deadline:
        """A deadline ``seconds`` from now.

        Raises:
            ValueError: ``seconds`` is negative or NaN.
        """
        return cls(clock.monotonic() + to_seconds(seconds, "seconds", allow_inf=True), clock)

    def remaining(self, now: float | None = None) -> float:
        """Seconds left (``float``, never negative); ``now`` defaults to ``clock.monotonic()``."""
        left = self.at - (self.clock.monotonic() if now is None else now)
        return left if left > 0.0 else 0.0

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.clock.monotonic() >= self.at

    def child(self, buffer: float | timedelta) -> Deadline:
        """A deadline ``buffer`` seconds earlier, leaving this service time for its own work.

        The seed's deadline propagation keeps 0.5 s per hop; the child may already be expired.

        Raises:
            ValueError: ``buffer`` is negative or NaN.
        """
        return Deadline(self.at - to_seconds(buffer, "buffer"), self.clock)

    def __lt__(self, other: Deadline) -> bool:
        return self.at < other.at


_INF = math.inf
_new_object = object.__new__
_set_at = Deadline.__dict__["at"].__set__
_set_clock = Deadline.__dict__["clock"].__set__


def _new_deadline(at: float, clock: Clock) -> Deadline:
    """``Deadline(at, clock)`` without the frozen dataclass's ``__init__`` (hot path of every Timeout)."""
    made: Deadline = _new_object(Deadline)
    _set_at(made, at)
    _set_clock(made, clock)
    return made


_current: ContextVar[Deadline | None] = ContextVar("stalwart_deadline", default=None)
_enforcer: ContextVar[AsyncScope | None] = ContextVar("stalwart_deadline_enforcer", default=None)


def current_deadline() -> Deadline | None:
    """The ambient deadline of the current context, or ``None`` when no scope is active."""
    return _current.get()


def remaining_time() -> float | None:
    """Seconds left until the ambient deadline (``0.0`` when passed), or ``None`` when there is none."""
    current = _current.get()
    return None if current is None else current.remaining()


class without_deadline:  # noqa: N801 - a context manager used like a function, as contextlib's are
    """Clear the ambient deadline for the body: ``with without_deadline(): asyncio.create_task(job())``.

    A task copies the context it is created in, so a task started inside a request handler inherits the request's
    deadline: right for work the handler waits for (``asyncio.gather``, a ``TaskGroup`` fanning out to several
    services), wrong for work meant to outlive the request (sending an e-mail, warming a cache). Create such tasks
    inside ``without_deadline()``: they start with no ambient deadline, and their own ``Timeout`` / ``deadline``
    scopes apply as usual.

    It clears what policies *read* (``current_deadline()`` is ``None`` in the body), not the enforcement of an
    enclosing ``async`` scope: the current task is still cancelled when that scope's deadline passes, so use it to
    start work, not to run long work in the current task. Sync only (``with``), usable in sync and async code;
    leaving it restores the enclosing deadline.
    """

    __slots__ = ("_enforcer_token", "_token")

    def __init__(self) -> None:
        self._token: Token[Deadline | None] | None = None
        self._enforcer_token: Token[AsyncScope | None] | None = None

    def __enter__(self) -> None:
        if self._token is not None:
            raise RuntimeError("without_deadline() cannot be entered twice at once")
        self._token = _current.set(None)
        self._enforcer_token = _enforcer.set(None)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None and self._enforcer_token is not None:
            token, enforcer_token = self._token, self._enforcer_token
            self._token = self._enforcer_token = None
            try:
                _enforcer.reset(enforcer_token)
                _current.reset(token)
            except ValueError:  # closed in another Context (an abandoned generator): nothing to restore there
                pass


def _left(ambient: Deadline, clock: Clock, now: float) -> float:
    """Seconds from ``now`` (read on ``clock``) to ``ambient``, which may be measured on another clock."""
    return ambient.at - (now if ambient.clock is clock else ambient.clock.monotonic())


def _exceeded(limit: float) -> DeadlineExceeded:
    if hooks_installed():
        emit(DeadlineExpired(limit))
    return DeadlineExceeded(f"deadline of {limit:.3f}s exceeded", timeout=limit)


def ambient_enforced() -> bool:
    """True when the ambient deadline is enforced by an async scope of the current task.

    Such a deadline cancels the task when it passes, so a policy waiting inside it (a bulkhead's queue) need not
    set a timer of its own for it. Internal API (docs/internals.md).
    """
    ambient = _current.get()
    return ambient is not None and _enforces(_enforcer.get(), ambient, current_task())


def _enforces(scope: AsyncScope | None, ambient: Deadline, task: asyncio.Task[object] | None) -> bool:
    """Whether ``scope`` will still cancel ``task`` when ``ambient`` passes: its timer is pending.

    A fired timer cancelled the task once (a body that swallowed that cancellation gets no second one); a cancelled
    timer belongs to a scope exited elsewhere (an abandoned async generator closed by the event loop).
    """
    return (
        scope is not None
        and scope.deadline is ambient
        and scope.task is task
        and not scope.expired
        and not scope.handle.cancelled()
    )


class AsyncScope:
    """The per-call record of an async scope enforcing a deadline on the current task.

    Built by :func:`enter_async_scope`; :meth:`exit` must be called exactly once, in the same task, with the
    exception that ended the body (``None`` on success). Internal API shared by ``deadline``, ``Timeout`` and
    ``AdaptiveTimeout``.

    Attributes:
        deadline: the effective deadline enforced (this scope's own, or the tighter ambient one).
        limit: seconds the body was given at entry (``float``).
        own: True when this scope's own limit is the binding one (False: the ambient deadline was tighter).
        expired: True once the timer fired and cancelled the task.
    """

    __slots__ = ("cancelling", "deadline", "enforcer_token", "expired", "handle", "limit", "own", "task", "token")

    def __init__(  # noqa: PLR0917 - internal, called positionally on the hot path
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[object],
        deadline: Deadline,
        limit: float,
        own: bool,
        token: Token[Deadline | None] | None,
    ) -> None:
        self.task = task
        self.deadline = deadline
        self.limit = limit
        self.own = own
        self.token = token
        self.expired = False
        self.cancelling = task.cancelling()
        self.handle = loop.call_later(limit, self._expire)
        self.enforcer_token = _enforcer.set(self)

    def _expire(self) -> None:
        self.expired = True
        self.task.cancel()

    def exit(self, exc: BaseException | None) -> None:
        """Leave the scope: cancel the timer, restore the context, convert this scope's own cancellation.

        Raises:
            DeadlineExceeded: the timer fired and the cancellation it caused (and only that one) ended the body.
        """
        self.handle.cancel()
        try:
            _enforcer.reset(self.enforcer_token)
        except ValueError:
            # Exited in another Context: the scope straddled a ``yield`` of an async generator that its consumer
            # abandoned, and the event loop's finalizer closes it in a task of its own. The timer is cancelled (a
            # cancelled handle also marks the scope inactive for the consumer, whose context still holds it); the
            # consumer's context cannot be restored from here, and its task must not be uncancelled from here.
            return
        if self.token is not None:
            _current.reset(self.token)
        # Only the cancellation this scope caused becomes DeadlineExceeded (as asyncio.timeout does): a
        # cancellation requested from outside as well leaves the count above the level seen on entry.
        if self.expired and self.task.uncancel() <= self.cancelling and isinstance(exc, asyncio.CancelledError):
            raise _exceeded(self.limit) from exc


def enter_async_scope(seconds: float, clock: Clock, *, fail_fast: bool) -> AsyncScope | None:
    """Start enforcing ``min(seconds from now, the ambient deadline)`` on the current task.

    Returns ``None`` when there is nothing to do: the ambient deadline is no later than this limit and an enclosing
    async scope of this task already enforces it (its expiry is its own error; a scope whose timer has fired or
    been cancelled enforces nothing any more). Otherwise the effective deadline
    becomes the ambient deadline inside the scope and a timer cancels the task when it passes.

    Args:
        seconds: this scope's own limit, finite float seconds > 0.
        clock: the clock the limit is measured on.
        fail_fast: raise at once, without entering, when the ambient deadline has already passed.

    Raises:
        RuntimeError: not called from an asyncio task.
        DeadlineExceeded: ``fail_fast`` and the ambient deadline has already passed.
    """
    loop = get_running_loop()
    task = current_task(loop)
    if task is None:
        raise RuntimeError("stalwart deadlines and timeouts must be used inside an asyncio task")
    now = clock.monotonic()
    ambient = _current.get()
    if ambient is not None:
        left = _left(ambient, clock, now)
        if left <= seconds:
            if left <= 0.0 and fail_fast:  # first: an enclosing scope's timer may not have run yet
                raise _exceeded(0.0)
            if _enforces(_enforcer.get(), ambient, task):
                return None
            return AsyncScope(loop, task, ambient, left if left > 0.0 else 0.0, False, None)
    mine = _new_deadline(now + seconds, clock)
    return AsyncScope(loop, task, mine, seconds, True, _current.set(mine))


def enter_sync_scope(seconds: float, clock: Clock) -> Token[Deadline | None] | None:
    """Set the ambient deadline to ``min(seconds from now, the ambient deadline)`` for sync code.

    Returns the token to pass to :func:`exit_sync_scope`, or ``None`` when the ambient deadline is already the
    tighter one (nothing to set). Internal API shared by ``Timeout.call`` and ``AdaptiveTimeout.call``.

    Raises:
        DeadlineExceeded: the ambient deadline has already passed (the call is not started).
    """
    now = clock.monotonic()
    ambient = _current.get()
    if ambient is not None:
        left = _left(ambient, clock, now)
        if left <= seconds:
            if left <= 0.0:
                raise _exceeded(0.0)
            return None
    return _current.set(_new_deadline(now + seconds, clock))


def exit_sync_scope(token: Token[Deadline | None] | None) -> None:
    """Restore the ambient deadline saved by :func:`enter_sync_scope`."""
    if token is not None:
        _current.reset(token)


class deadline:  # noqa: N801 - a context manager used like a function, as contextlib's are
    """A deadline scope: ``with deadline(seconds):`` or ``async with deadline(seconds):``.

    Args:
        seconds: time allowed for the body, ``float`` seconds or a ``timedelta``; ``None`` or ``math.inf`` sets no
            limit of its own (the enclosing deadline still applies).
        clock: the monotonic clock (default: the system clock).

    The effective deadline is the earlier of this one and the enclosing one. In ``async with`` the task is
    cancelled when the effective deadline is reached and :class:`~stalwart.DeadlineExceeded` is raised at the end
    of the scope; when the enclosing deadline is the earlier one and an enclosing ``async`` scope of the same task
    already enforces it, that scope's expiry is that scope's own error. The ``with`` form only sets the ambient
    deadline (sync code cannot be pre-empted).

    Generators: a scope around a ``yield`` lends its deadline (and, in ``async with``, its timer) to the consumer's
    code for as long as the generator is suspended there, since a generator runs in its consumer's context. Close
    such a generator where it is consumed (``async with contextlib.aclosing(gen()) as items:``), or keep the scope
    inside one step of the generator. A generator abandoned mid-scope is closed later by the event loop in a task of
    its own: the timer is then cancelled and the scope stops enforcing anything, but the consumer's context still
    shows its deadline (trio and PEP 789 forbid such yields for this reason).

    Raises:
        ValueError: ``seconds`` is negative or NaN.
        TypeError: ``seconds`` is not a number, ``timedelta`` or ``None``, or ``clock`` is not a clock.
        DeadlineExceeded: (async form) the deadline expired inside the scope.
    """

    __slots__ = ("_clock", "_deadline", "_entered", "_scope", "_seconds", "_token")

    def __init__(self, seconds: float | timedelta | None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._seconds = math.inf if seconds is None else to_seconds(seconds, "seconds", allow_inf=True)
        self._clock = check_clock(clock)
        self._token: Token[Deadline | None] | None = None
        self._deadline: Deadline | None = None
        self._scope: AsyncScope | None = None
        self._entered = False

    @property
    def deadline(self) -> Deadline | None:
        """The effective deadline inside the scope (``None`` before entry or when unlimited)."""
        return self._deadline

    def _check_once(self) -> None:
        if self._entered:
            raise RuntimeError("a deadline scope cannot be entered twice")
        self._entered = True

    def __enter__(self) -> Deadline | None:
        if self._entered:
            raise RuntimeError("a deadline scope cannot be entered twice")
        self._entered = True
        effective = outer = _current.get()
        seconds = self._seconds
        if seconds != _INF:
            clock = self._clock
            now = clock.monotonic()
            if outer is None or seconds < outer.at - (now if outer.clock is clock else outer.clock.monotonic()):
                effective = _new_deadline(now + seconds, clock)
        self._deadline = effective
        self._token = _current.set(effective)
        return effective

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            token, self._token = self._token, None
            try:
                _current.reset(token)
            except ValueError:  # closed in another Context (an abandoned generator): nothing to restore there
                pass

    async def __aenter__(self) -> Deadline | None:
        self._check_once()
        if math.isinf(self._seconds):
            self._deadline = _current.get()
            return self._deadline
        # The body may be given no time at all (an expired ambient deadline): it is entered and cancelled at its
        # first await, as with asyncio.timeout.
        self._scope = scope = enter_async_scope(self._seconds, self._clock, fail_fast=False)
        self._deadline = _current.get() if scope is None else scope.deadline
        return self._deadline

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        scope = self._scope
        if scope is not None:
            self._scope = None
            scope.exit(exc)
