"""``Fallback``: answer with a value, or a handler's result, when a call fails.

The outermost policy of the standard order (DESIGN.md): it answers for every failure inside it, including
:class:`~stalwart.Rejected` decisions (an open circuit, a full bulkhead are the classic fallback cases), but never
for cancellation or interpreter exit (``CancelledError``, ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._policy import Policy, check_decoratable, is_async_callable, refuse_coroutine, refuse_if_not_awaited
from ._types import ExceptionSpec, compile_exception_spec

__all__ = ["Fallback"]

P = ParamSpec("P")
T = TypeVar("T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class Fallback(Policy):
    """Return ``value``, or ``handler(exc)``, when the call raises an exception matching ``on``.

    Exactly one of ``value`` and ``handler`` is given. Any value is honoured, ``None``, ``0``, ``{}`` and ``""``
    included; the same object is returned every time (give a handler to build a fresh one per call).

    ``handler(exc) -> T`` receives the exception. For async calls it may be a coroutine function (awaited) or a
    plain function (an awaitable it returns is awaited too); for sync calls it must be a plain function (an async
    handler makes :meth:`call` raise ``TypeError`` before the call is made, and a coroutine returned by the handler
    or by the call is refused with ``TypeError``). Such sync/async mix-ups, here or in a policy inside, are never
    answered by the fallback, whatever ``on`` says. An exception raised by the handler propagates, chained to the
    original.

    Args:
        value: the value returned in place of a failure.
        handler: a function of the exception returning the value.
        on: which exceptions to answer for: a type, a tuple of types or a predicate ``(exc) -> bool``
            (default ``Exception``). ``Rejected`` errors match when ``on`` covers them (``Exception`` does);
            ``CancelledError``, ``KeyboardInterrupt``, ``SystemExit`` and ``GeneratorExit`` never match.

    Raises:
        ValueError: neither or both of ``value`` and ``handler`` were given.
        TypeError: ``handler`` is not callable, or ``on`` is not a valid exception specification.
    """

    __slots__ = ("_async_handler", "_handler", "_matches", "_value")

    def __init__(
        self,
        *,
        value: Any = _MISSING,
        handler: Callable[[BaseException], Any] | None = None,
        on: ExceptionSpec = Exception,
    ) -> None:
        if (value is _MISSING) == (handler is None):
            raise ValueError("Fallback takes exactly one of value= and handler=")
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        self._value = value
        self._handler = handler
        self._async_handler = handler is not None and is_async_callable(handler)
        self._matches = compile_exception_spec(on, parameter="on", exclude_rejected=False)

    def __repr__(self) -> str:
        if self._handler is None:
            return f"Fallback(value={self._value!r})"
        return f"Fallback(handler={self._handler!r})"

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)``; on a matching exception return the fallback instead.

        Raises:
            TypeError: ``fn`` returned something that is not awaitable (a sync function belongs in :meth:`call`);
                never answered by the fallback, whatever ``on`` says.
        """
        awaitable: Any = fn  # until fn returns
        try:
            awaitable = fn(*args, **kwargs)
            result: T = await awaitable
            return result
        except BaseException as exc:
            refuse_if_not_awaited(awaitable, fn, self, exc)
            if not self._matches(exc):
                raise
            handler = self._handler
            if handler is None:
                return cast("T", self._value)
            answer = handler(exc)
            if self._async_handler or inspect.isawaitable(answer):  # also a plain function returning a coroutine
                answer = await answer
            return cast("T", answer)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)``; on a matching exception return the fallback instead.

        Raises:
            TypeError: the handler is a coroutine function (it cannot answer a sync call), or ``fn`` or the handler
                returned a coroutine.
        """
        if self._async_handler:
            raise TypeError("an async fallback handler cannot answer a sync call; give a plain function")
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if not self._matches(exc):
                raise
            handler = self._handler
            if handler is None:
                return cast("T", self._value)
            answer = handler(exc)
            if type(answer) is CoroutineType:
                refuse_coroutine(answer, self, handler)
            return cast("T", answer)
        if type(result) is CoroutineType:
            refuse_coroutine(result, self, fn)
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async).

        Raises:
            TypeError: ``fn`` is a generator function, or a sync function while the handler is async.
        """
        if self._async_handler and not check_decoratable(fn, self):
            raise TypeError("an async fallback handler cannot answer a sync function; give a plain function")
        return super().__call__(fn)
