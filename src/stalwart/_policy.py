"""The base class every policy shares: the decorator front door and the sync/async entry points.

A policy is usable three ways:

* as a decorator, ``@policy`` on a sync or async function (detected once, at decoration time);
* ``await policy.run(fn, *args, **kwargs)`` for a coroutine function;
* ``policy.call(fn, *args, **kwargs)`` for a sync function.

Generator and async-generator functions are refused with :class:`TypeError` at decoration time: a policy cannot
retry or time a generator that has already yielded. So are ``staticmethod``/``classmethod`` objects (put the policy
below them). A sync entry point whose function returns a coroutine raises :class:`TypeError` (see
:func:`refuse_coroutine`): the policy could not have protected work that only runs when the caller awaits it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, ParamSpec, TypeVar, cast, overload

from ._types import MisuseError

__all__ = ["Policy", "check_decoratable", "is_async_callable", "refuse_coroutine"]

P = ParamSpec("P")
T = TypeVar("T")


def _plain_target(fn: object) -> object:
    """``fn`` without ``functools.partial`` layers (a partial calls its ``func``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _innermost(fn: object) -> object:
    """Follow partials and the ``__wrapped__`` of plain functions and methods; stop at any other callable.

    ``inspect.unwrap`` would follow a ``__wrapped__`` through a callable *object* too, and an object that runs a
    coroutine to completion (a "sync from async" adapter built with ``functools.update_wrapper``) carries the
    coroutine function it runs: what calling it returns is decided by its own ``__call__``, not by what it wraps.
    """
    seen: set[int] = set()  # a __wrapped__ cycle ends the walk
    fn = _plain_target(fn)
    while (inspect.isfunction(fn) or inspect.ismethod(fn)) and id(fn) not in seen:
        seen.add(id(fn))
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is None or _code_says(fn):  # a coroutine or generator function is what it says it is
            return fn
        fn = _plain_target(wrapped)
    return fn


def _code_says(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine, as far as can be told without calling it.

    ``inspect.iscoroutinefunction`` alone misses a ``functools.partial`` of a callable object whose ``__call__`` is
    ``async`` (it unwraps partials, then checks only functions and methods). A plain function or method is judged by
    itself and, when it is a pass-through decorator built with ``functools.wraps``, by what it wraps (the common
    tracing and logging decorators return the wrapped coroutine). Any other callable object is judged by its own
    ``__call__``, never by a ``__wrapped__`` it carries (see :func:`_innermost`). A class is sync: calling it builds
    an instance.
    """
    if inspect.iscoroutinefunction(fn):
        return True
    target = _innermost(fn)
    if inspect.isfunction(target) or inspect.ismethod(target):
        return inspect.iscoroutinefunction(target)
    if isinstance(target, type):
        return False
    return inspect.iscoroutinefunction(getattr(type(target), "__call__", None))  # noqa: B004 - async __call__


def _is_generator_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a generator or an async generator (judged as :func:`is_async_callable`)."""
    target = _innermost(fn)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        if isinstance(target, type):
            return False
        target = getattr(type(target), "__call__", None)  # noqa: B004 - a generator __call__
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)


def check_decoratable(fn: Callable[..., Any], policy: object) -> bool:
    """Validate a function for decoration; return True if calling it returns a coroutine.

    Coroutine functions are recognised directly, behind ``functools.partial``, behind pass-through decorators built
    with ``functools.wraps``, and as callable objects with an ``async def __call__`` (also inside a partial).

    Raises:
        TypeError: ``fn`` is not callable; is a generator or async-generator function; or is a ``staticmethod`` /
            ``classmethod`` object (apply the policy first, then ``@staticmethod``/``@classmethod`` above it: the
            policy's wrapper is a plain function, which a class would otherwise bind as an instance method).
    """
    name = type(policy).__name__
    if isinstance(fn, staticmethod | classmethod):
        kind = type(fn).__name__
        raise TypeError(
            f"{name} cannot decorate a {kind} object: put @{kind} above the policy "
            f"(@{kind} then @{name}(...) then def ...), so that the policy wraps the function itself"
        )
    if not callable(fn):
        raise TypeError(f"{name} decorates callables; got {fn!r}")
    if _is_generator_callable(fn):
        raise TypeError(
            f"{name} cannot decorate the generator function {getattr(fn, '__qualname__', fn)!r}: "
            "wrap the code that consumes it instead"
        )
    return is_async_callable(fn)


def refuse_not_awaitable(value: object, policy: object, fn: object, error: BaseException | None) -> NoReturn:
    """Raise ``TypeError``: ``fn``, awaited by an async entry point, returned ``value``, which is not awaitable.

    The ``await`` raises a ``TypeError`` of its own after ``fn`` has run; with ``on=Exception`` (or any ``on`` that
    covers ``TypeError``) that was retried, running a sync function ``max_attempts`` times, with the backoff sleeps
    in between, before failing with the same error. Calling ``fn`` again cannot make its result awaitable, so this
    is a usage error, raised at once (``error``, the ``await``'s own, is its ``__cause__``).

    Raises:
        TypeError: always (a :class:`~stalwart._types.MisuseError`, which no ``on=`` matches), naming the function
            and saying what to use instead.
    """
    name = policy if isinstance(policy, str) else type(policy).__name__
    raise MisuseError(
        f"{getattr(fn, '__qualname__', fn)!r} returned {type(value).__name__!r}, which is not awaitable, to "
        f"{name}'s async path: use `{name.lower()}.call(fn, ...)` for a sync function"
    ) from error


def refuse_if_not_awaited(awaitable: object, fn: object, policy: object, error: BaseException) -> None:
    """Raise the usage error when ``error`` came from awaiting what ``fn`` returned and that is not awaitable.

    The async entry points hold ``awaitable = fn`` until ``fn`` returns (a function is never what it returns), so
    ``awaitable is fn`` means ``fn`` itself raised: its error is the call's, and this returns.

    Raises:
        TypeError: a :class:`~stalwart._types.MisuseError` (see :func:`refuse_not_awaitable`), when ``fn`` returned
            something that is not awaitable.
    """
    if awaitable is not fn and isinstance(error, TypeError) and not inspect.isawaitable(awaitable):
        refuse_not_awaitable(awaitable, policy, fn, error)


def refuse_coroutine(result: object, policy: object, fn: object) -> NoReturn:
    """Close a coroutine that a sync entry point received from ``fn``, and raise.

    A sync ``call`` (or a sync-decorated function) whose function returns a coroutine has protected nothing: the
    work runs later, when the caller awaits it, outside the retry, the timeout, the bulkhead slot or the fallback.
    Returning it would hide that (tenacity issue #132: a function returning a coroutine is retried as a sync one,
    i.e. never); so every sync entry point refuses it.

    Args:
        result: the coroutine (closed here).
        policy: the policy (or its class name) whose sync path received it, for the message.
        fn: the function that returned it, for the message.

    Raises:
        TypeError: always (a :class:`~stalwart._types.MisuseError`, which no ``on=`` matches), naming the function
            and saying what to use instead.
    """
    if inspect.iscoroutine(result):
        result.close()  # never awaited: close it so that no "coroutine was never awaited" warning follows
    name = policy if isinstance(policy, str) else type(policy).__name__
    raise MisuseError(
        f"{getattr(fn, '__qualname__', fn)!r} returned a coroutine to {name}'s sync path, which cannot await it: "
        "use `await policy.run(fn, ...)`, or decorate an `async def` function"
    )


class Policy:
    """Base class of the policies: subclasses implement :meth:`run` (async) and :meth:`call` (sync)."""

    __slots__ = ()

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the coroutine function ``fn(*args, **kwargs)`` under this policy and return its result."""
        raise NotImplementedError

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the sync function ``fn(*args, **kwargs)`` under this policy and return its result."""
        raise NotImplementedError

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async); the wrapper keeps ``fn``'s signature for type checkers.

        Raises:
            TypeError: ``fn`` is a generator or async-generator function, or a ``staticmethod``/``classmethod``
                object (see :func:`check_decoratable`).
        """
        if check_decoratable(fn, self):
            run = self.run

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await run(fn, *args, **kwargs)

            return async_wrapper

        call = self.call

        @functools.wraps(fn)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(fn, *args, **kwargs)

        return cast("Callable[P, Any]", sync_wrapper)
