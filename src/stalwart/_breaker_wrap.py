"""The circuit breaker's decorator: sync and async wrappers with the hot path inlined.

``CircuitBreaker.__call__`` delegates here. The wrappers behave exactly as ``CircuitBreaker.call``/``run`` (same
permits, same classification, same events); they only save the calls a generic wrapper would make on the common
paths: a CLOSED permit (one attribute read), a success of the consecutive model (one read and one increment), and
a success of a rate model (one lock and one window update). They hand a permit back on the same paths as
``call``/``run`` too: when the clock read for the call's start fails, and (through ``_record_exception`` and
``_record_result``) when classifying the outcome raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from . import _events
from ._policy import check_decoratable, refuse_coroutine

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker

__all__ = ["decorate"]

P = ParamSpec("P")
T = TypeVar("T")


def _no_window(now: float) -> bool:  # pragma: no cover - window_epoch is -1 without a window
    return False


def decorate(breaker: CircuitBreaker, fn: Callable[P, Any]) -> Callable[P, Any]:
    """Wrap ``fn`` (sync or async) in ``breaker``.

    Raises:
        TypeError: ``fn`` is a generator or async-generator function (at decoration), or a sync ``fn`` returned a
            coroutine (at the call; the coroutine is closed and the permit returned).
    """
    core = breaker._core
    acquire_slow = breaker._acquire_slow
    record_exception = breaker._record_exception
    record_result = breaker._record_result
    monotonic = breaker._monotonic
    timed = breaker._timed
    plain = breaker._plain
    lock_acquire = breaker._lock.acquire
    lock_release = breaker._lock.release
    drain = breaker._drain
    release = breaker.release
    give_back = breaker._give_back
    window_now = breaker._window_now
    add_success = core.window.add_success if core.window is not None else _no_window

    if check_decoratable(fn, breaker):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            permit = core.fast_epoch
            if permit < 0:
                permit = acquire_slow()
            try:
                start = monotonic() if timed or _events._installed else None
            except BaseException:
                give_back(permit)
                raise
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                record_exception(permit, exc, start)
                raise
            if start is None and plain:  # not timed: no hook installed, slow calls not tracked
                if permit == core.quiet_epoch:
                    core.calls += 1
                    return result
                if permit == core.window_epoch:
                    lock_acquire()
                    try:
                        if permit == core.window_epoch:
                            if add_success(monotonic() if window_now else 0.0):
                                core.judge(monotonic())
                        else:  # the breaker changed state meanwhile
                            core.success(permit, monotonic())
                    finally:
                        lock_release()
                    if core.changes:
                        drain()
                    return result
            record_result(permit, result, start)
            return result

        return async_wrapper

    @functools.wraps(fn)
    def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        permit = core.fast_epoch
        if permit < 0:
            permit = acquire_slow()
        try:
            start = monotonic() if timed or _events._installed else None
        except BaseException:
            give_back(permit)
            raise
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            record_exception(permit, exc, start)
            raise
        if type(result) is CoroutineType:  # nothing was protected: no outcome, and refuse it
            release(permit)
            refuse_coroutine(result, breaker, fn)
        if start is None and plain:  # not timed: no hook installed, slow calls not tracked
            if permit == core.quiet_epoch:
                core.calls += 1
                return result
            if permit == core.window_epoch:
                lock_acquire()
                try:
                    if permit == core.window_epoch:
                        if add_success(monotonic() if window_now else 0.0):
                            core.judge(monotonic())
                    else:  # the breaker changed state meanwhile
                        core.success(permit, monotonic())
                finally:
                    lock_release()
                if core.changes:
                    drain()
                return result
        record_result(permit, result, start)
        return result

    return cast("Callable[P, Any]", sync_wrapper)
