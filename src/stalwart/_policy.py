"""The base class every policy shares: the decorator front door and the sync/async entry points.

A policy is usable three ways:

* as a decorator, ``@policy`` on a sync or async function (detected once, at decoration time);
* ``await policy.run(fn, *args, **kwargs)`` for a coroutine function;
* ``policy.call(fn, *args, **kwargs)`` for a sync function.

Generator and async-generator functions are refused with :class:`TypeError` at decoration time: a policy cannot
retry or time a generator that has already yielded.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

__all__ = ["Policy", "check_decoratable"]

P = ParamSpec("P")
T = TypeVar("T")


def check_decoratable(fn: Callable[..., Any], policy: object) -> bool:
    """Validate a function for decoration; return True if it is a coroutine function.

    Raises:
        TypeError: ``fn`` is not callable, or is a generator or async-generator function.
    """
    if not callable(fn):
        raise TypeError(f"{type(policy).__name__} decorates callables; got {fn!r}")
    target = inspect.unwrap(fn)
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        raise TypeError(
            f"{type(policy).__name__} cannot decorate the generator function {getattr(fn, '__qualname__', fn)!r}: "
            "wrap the code that consumes it instead"
        )
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with an async __call__
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
            TypeError: ``fn`` is a generator or async-generator function.
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
