"""``Pipeline``: policies composed in an explicit order, outermost first (Polly's resilience pipeline builder).

The chain is built once, at construction: each stage is ``functools.partial(policy.run, next_stage)``, so a call
allocates no closures; each policy receives the next stage as its function and the user's function as the stage's
first argument. As a decorator, the pipeline stacks the policies' own (specialised) decorators once, at decoration
time. A policy that calls its function several times (``Retry``) runs everything inside it again.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._policy import Policy, check_decoratable, refuse_coroutine, refuse_not_awaitable
from ._timeout import Timeout

__all__ = ["Pipeline"]

P = ParamSpec("P")
T = TypeVar("T")


def _invoke(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """The innermost async stage: call the user's function (its awaitable is awaited by the policy around it).

    A result that cannot be awaited is refused here, naming the user's function: the ``await`` of the policy around
    would raise a plain ``TypeError`` that the outer policies took for a failure of the call (answered by a
    ``Fallback``, retried by a ``Retry`` around a ``Timeout``).
    """
    result = fn(*args, **kwargs)
    if type(result) is not CoroutineType and not inspect.isawaitable(result):
        refuse_not_awaitable(result, "Pipeline", fn, None)
    return result


def _invoke_sync(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """The innermost sync stage: call the user's function; a coroutine it returns is refused (see ``call``)."""
    result = fn(*args, **kwargs)
    if type(result) is CoroutineType:
        refuse_coroutine(result, "Pipeline", fn)
    return result


def _as_timeout(value: Policy | float | timedelta | None, parameter: str) -> Policy | None:
    if value is None or isinstance(value, Policy):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise TypeError(f"{parameter} must be a Timeout, another policy or a number of seconds; got {value!r}")
    try:
        return Timeout(value)
    except ValueError as exc:  # Timeout names its own parameter, "seconds": name the one the caller passed
        raise ValueError(f"{parameter}: {exc}") from None


class Pipeline(Policy):
    """Compose policies; the first given is the outermost, and the order given is kept.

    ``Pipeline(a, b, c)`` runs a call as ``a(b(c(call)))``. Usable as a decorator (sync or async),
    ``await pipeline.run(fn, *args)`` or ``pipeline.call(fn, *args)``. A pipeline is itself a policy, so
    pipelines nest. An empty pipeline calls the function directly.

    :meth:`standard` builds DESIGN.md's standard order,
    ``Fallback → Timeout (total) → Retry → CircuitBreaker → Bulkhead → Timeout (per attempt) → call``; any other
    order is allowed and should be documented where it is used.

    Args:
        *policies: the policies, outermost first (any :class:`~stalwart.Policy`).

    Raises:
        TypeError: an argument is not a policy.
    """

    __slots__ = ("_arun", "_call", "_policies")

    def __init__(self, *policies: Policy) -> None:
        for position, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise TypeError(f"Pipeline takes policies; argument {position} is {policy!r}")
        self._policies = policies
        arun: Callable[..., Any] = _invoke
        call: Callable[..., Any] = _invoke_sync
        for policy in reversed(policies):
            arun = functools.partial(policy.run, arun)
            call = functools.partial(policy.call, call)
        self._arun = arun
        self._call = call

    @classmethod
    def standard(
        cls,
        *,
        fallback: Policy | None = None,
        total_timeout: Policy | float | timedelta | None = None,
        retry: Policy | None = None,
        breaker: Policy | None = None,
        bulkhead: Policy | None = None,
        attempt_timeout: Policy | float | timedelta | None = None,
    ) -> Pipeline:
        """The standard order, skipping the policies given as ``None``.

        ``Fallback → Timeout (total) → Retry → CircuitBreaker → Bulkhead → Timeout (per attempt) → call``
        (DESIGN.md): the fallback answers for every failure inside; the total timeout bounds all attempts and
        backoff sleeps together; the breaker sees every attempt, and an open breaker ends the retries at once and
        rejects before anything queues; no bulkhead slot is held during a backoff sleep; each attempt has its own
        limit (a ``Timeout`` or an ``AdaptiveTimeout``).

        Args:
            fallback: usually a :class:`~stalwart.Fallback`.
            total_timeout: a policy, or seconds (``float``/``timedelta``) for a :class:`~stalwart.Timeout`.
            retry: usually a ``Retry`` (a ``Hedge`` takes its place).
            breaker: usually a ``CircuitBreaker``.
            bulkhead: usually a :class:`~stalwart.Bulkhead`.
            attempt_timeout: a policy, or seconds for a :class:`~stalwart.Timeout`.

        Raises:
            TypeError: an argument is neither ``None`` nor a policy (nor seconds, for the timeouts); the
                message names it.
            ValueError: invalid seconds for a timeout.
        """
        for name, policy in (("fallback", fallback), ("retry", retry), ("breaker", breaker), ("bulkhead", bulkhead)):
            if policy is not None and not isinstance(policy, Policy):
                raise TypeError(f"{name} must be a policy or None, got {policy!r}")
        ordered = (
            fallback,
            _as_timeout(total_timeout, "total_timeout"),
            retry,
            breaker,
            bulkhead,
            _as_timeout(attempt_timeout, "attempt_timeout"),
        )
        return cls(*(policy for policy in ordered if policy is not None))

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies, outermost first."""
        return self._policies

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(repr(policy) for policy in self._policies)})"

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` through every policy, outermost first."""
        return cast("T", await self._arun(fn, *args, **kwargs))

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the sync ``fn(*args, **kwargs)`` through every policy, outermost first.

        Raises:
            TypeError: ``fn`` returned a coroutine (the policies could not have protected it; use :meth:`run`).
        """
        return cast("T", self._call(fn, *args, **kwargs))

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async); same behaviour as :meth:`run` / :meth:`call`.

        The decorator is built once from each policy's own decorator, innermost first, so every policy's
        specialised wrapper is used (faster than going through ``run``/``call`` on each call).

        Raises:
            TypeError: ``fn`` is a generator or async-generator function, or a policy refuses ``fn``.
        """
        is_async = check_decoratable(fn, self)
        wrapped: Callable[..., Any] = fn
        for policy in reversed(self._policies):
            wrapped = policy(wrapped)
        if wrapped is fn:  # an empty pipeline still returns a new function, as every decorator does
            if is_async:

                @functools.wraps(fn)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    return await fn(*args, **kwargs)

                return async_wrapper

            @functools.wraps(fn)
            def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return fn(*args, **kwargs)

            return cast("Callable[P, Any]", sync_wrapper)
        return cast("Callable[P, Any]", wrapped)
