"""``Timeout``: a per-call time limit, and the seed's ``with_timeout`` helper.

A timeout is a deadline scope around one call (DESIGN.md §1.4, trio's ``fail_after``): the call's deadline is the
earlier of ``seconds`` from now and the ambient deadline, and it becomes the ambient deadline inside the call, so a
nested ``Retry`` or the httpx transport sees it.

The async form is a lean equivalent of ``asyncio.timeout`` (one timer handle, ``Task.cancel``/``Task.uncancel``,
no extra coroutine frames): only the cancellation it caused becomes :class:`~stalwart.DeadlineExceeded`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._clock import SYSTEM_CLOCK, Clock
from ._config import check_clock, to_seconds
from ._deadline import enter_async_scope, enter_sync_scope, exit_sync_scope
from ._exceptions import DeadlineExceeded
from ._policy import Policy, check_decoratable, refuse_coroutine, refuse_if_not_awaited

__all__ = ["Timeout", "with_timeout"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no fallback>"


_MISSING: Any = _Missing()


class Timeout(Policy):
    """Limit one call to ``seconds``; the ambient deadline, if tighter, still applies.

    Usable as a decorator (sync or async), ``await Timeout(s).run(fn, *args)`` or ``Timeout(s).call(fn, *args)``.
    A ``Timeout`` is immutable and reusable: one instance can guard any number of concurrent calls.

    Async calls are **cancelled** when the call's deadline passes and raise :class:`~stalwart.DeadlineExceeded`
    (a :class:`TimeoutError`), but only when this timeout's own timer fired: a cancellation from outside passes
    through untouched, and when an enclosing async scope of the same task (``deadline``, another ``Timeout``)
    already enforces a tighter ambient deadline, that scope's expiry is that scope's own error. A tighter ambient
    deadline that nothing in this task enforces (set by a sync scope, or inherited by a child task) is enforced by
    this timeout.

    Sync calls **cannot be pre-empted**: Python offers no safe way to interrupt arbitrary code in a thread. The sync
    form sets the ambient deadline for the call, which stalwart's policies (retry sleeps, bulkhead queues) and the
    httpx transport's timeouts respect; a call that finishes late returns its result rather than discarding
    finished work (DESIGN.md).

    In both forms a call whose ambient deadline has already passed is not started: ``DeadlineExceeded`` is raised at
    once. A :class:`~stalwart.DeadlineExpired` event is emitted (when hooks are installed) whenever the timeout
    raises ``DeadlineExceeded``.

    Args:
        seconds: the limit, ``float`` seconds > 0 or a ``timedelta``.
        clock: the monotonic clock deadlines are measured on (default: the system clock). Async expiry is timed
            by the event loop, which runs on the system clock.

    Raises:
        ValueError: ``seconds`` is zero, negative, NaN or infinite.
        TypeError: ``seconds`` is not a number or a ``timedelta``, or ``clock`` is not a clock.
    """

    __slots__ = ("_clock", "_seconds")

    def __init__(self, seconds: float | timedelta, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._seconds = to_seconds(seconds, "seconds", allow_zero=False)
        self._clock = check_clock(clock)

    @property
    def seconds(self) -> float:
        """The limit in seconds (``float``)."""
        return self._seconds

    def __repr__(self) -> str:
        return f"Timeout({self._seconds!r})"

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` with this limit.

        Raises:
            DeadlineExceeded: this timeout expired (the call was cancelled), or the ambient deadline had already
                passed (the call was not started).
            TypeError: ``fn`` returned something that is not awaitable (a sync function belongs in :meth:`call`).
        """
        scope = enter_async_scope(self._seconds, self._clock, fail_fast=True)
        awaitable: Any = fn  # until fn returns (a function is not awaitable: told apart below)
        try:
            awaitable = fn(*args, **kwargs)
            result: T = await awaitable
        except BaseException as exc:
            if scope is not None:
                scope.exit(exc)
            refuse_if_not_awaited(awaitable, fn, self, exc)
            raise
        if scope is not None:  # None: a tighter ambient deadline, enforced by an enclosing scope
            scope.exit(None)
        return result

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` with the ambient deadline set to this limit (no pre-emption).

        Returns the result even when it arrives after the deadline.

        Raises:
            DeadlineExceeded: the ambient deadline had already passed (the call was not started).
            TypeError: ``fn`` returned a coroutine (an ``async def`` function belongs in :meth:`run`).
        """
        token = enter_sync_scope(self._seconds, self._clock)
        try:
            result = fn(*args, **kwargs)
        finally:
            exit_sync_scope(token)
        if type(result) is CoroutineType:
            refuse_coroutine(result, self, fn)
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async) with this timeout; same behaviour as :meth:`run` / :meth:`call`.

        Raises:
            TypeError: ``fn`` is a generator or async-generator function.
        """
        seconds = self._seconds
        clock = self._clock
        if check_decoratable(fn, self):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                scope = enter_async_scope(seconds, clock, fail_fast=True)
                if scope is None:
                    return await fn(*args, **kwargs)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    scope.exit(exc)
                    raise
                scope.exit(None)
                return result

            return async_wrapper

        policy = self

        @functools.wraps(fn)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            token = enter_sync_scope(seconds, clock)
            try:
                result = fn(*args, **kwargs)
            finally:
                exit_sync_scope(token)
            if type(result) is CoroutineType:
                refuse_coroutine(result, policy, fn)
            return result

        return cast("Callable[P, Any]", sync_wrapper)


@overload
async def with_timeout(awaitable: Awaitable[T], seconds: float | timedelta) -> T: ...


@overload
async def with_timeout(awaitable: Awaitable[T], seconds: float | timedelta, fallback: F) -> T | F: ...


async def with_timeout(awaitable: Awaitable[Any], seconds: float | timedelta, fallback: Any = _MISSING) -> Any:
    """Await ``awaitable`` for at most ``seconds``; on this limit's expiry return ``fallback`` if one was given.

    The seed's helper, with its defect fixed: any fallback value is honoured, including ``None``, ``0``, ``{}`` and
    ``""`` (a sentinel marks "no fallback", not ``None``). The limit behaves as :class:`Timeout`'s: the ambient
    deadline still applies, and when an enclosing async scope of this task enforces a tighter one, its expiry is
    that scope's error (no fallback). A ``DeadlineExceeded`` raised *by* the awaitable is its own error and
    propagates.

    Args:
        awaitable: a coroutine, task or future. A task or future is cancelled on expiry.
        seconds: the limit, ``float`` seconds > 0 or a ``timedelta``.
        fallback: the value returned on expiry; omit it to raise instead.

    Raises:
        DeadlineExceeded: the limit expired and no fallback was given.
        ValueError, TypeError: invalid ``seconds`` (a coroutine passed in is closed, never left un-awaited).
    """
    try:
        limit = to_seconds(seconds, "seconds", allow_zero=False)
    except (TypeError, ValueError):
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise
    scope = enter_async_scope(limit, SYSTEM_CLOCK, fail_fast=False)
    if scope is None:
        return await awaitable
    try:
        result = await awaitable
    except BaseException as exc:
        try:
            scope.exit(exc)
        except DeadlineExceeded:
            if fallback is _MISSING:
                raise
            return fallback
        raise
    scope.exit(None)
    return result
