"""Specialised decorator wrappers for :class:`~stalwart.Retry`: the success path, as short as it can be.

Each wrapper reads the clock, calls the function inside a ``try`` and returns; only a retryable failure enters the
policy's loop (``_retry_sync`` / ``_retry_async``), outside the ``except`` block so that later exceptions do not
get the first one as ``__context__``. With a budget, the success path records the success inline where it can
(:func:`~stalwart._budget.inline_kind`: a full token bucket records nothing; a ratio budget deposits with the
wrapper's own clock reading), and otherwise calls ``record_success(True)``.
``on_result`` uses the generic wrappers of :class:`~stalwart.Policy`. A sync function that returns a coroutine is
refused (:func:`~stalwart._policy.refuse_coroutine`): nothing would have been retried.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from ._budget import INLINE_RATIO, INLINE_TOKEN_BUCKET, inline_kind
from ._policy import refuse_coroutine

if TYPE_CHECKING:
    from ._retry import Retry

__all__ = ["wrap_async", "wrap_sync"]


def wrap_sync(retry: Retry, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The decorator wrapper of a sync ``fn`` (``retry`` has no ``on_result``)."""
    monotonic = retry._clock.monotonic
    should_retry = retry._should_retry
    retry_sync = retry._retry_sync
    budget = retry._budget
    if budget is None:

        @functools.wraps(fn)
        def retrying(*args: Any, **kwargs: Any) -> Any:
            start = monotonic()
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                if not should_retry(e):
                    raise
                failure = e
            else:
                if type(result) is CoroutineType:
                    refuse_coroutine(result, retry, fn)
                return result
            return retry_sync(fn, args, kwargs, start, failure, None)

        return retrying

    record_success = budget.record_success
    kind = inline_kind(budget, monotonic)
    if kind == INLINE_TOKEN_BUCKET:

        @functools.wraps(fn)
        def retrying_with_token_bucket(*args: Any, **kwargs: Any) -> Any:
            start = monotonic()
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                if not should_retry(e):
                    raise
                failure = e
            else:
                if type(result) is CoroutineType:
                    refuse_coroutine(result, retry, fn)
                if budget._refill:  # type: ignore[attr-defined]  # a full bucket records nothing
                    record_success(True)
                return result
            return retry_sync(fn, args, kwargs, start, failure, None)

        return retrying_with_token_bucket

    if kind == INLINE_RATIO:
        advance = budget._advance  # type: ignore[attr-defined]
        pending = budget._pending  # type: ignore[attr-defined]

        @functools.wraps(fn)
        def retrying_with_ratio_budget(*args: Any, **kwargs: Any) -> Any:
            start = monotonic()
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                if not should_retry(e):
                    raise
                failure = e
            else:
                if type(result) is CoroutineType:
                    refuse_coroutine(result, retry, fn)
                if start >= budget._roll_due:  # type: ignore[attr-defined]
                    advance(start)
                pending.append(None)  # the call's deposit, at its start (list.append: the cheapest call)
                return result
            return retry_sync(fn, args, kwargs, start, failure, None)

        return retrying_with_ratio_budget

    @functools.wraps(fn)
    def retrying_with_budget(*args: Any, **kwargs: Any) -> Any:
        start = monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            if not should_retry(e):
                raise
            failure = e
        else:
            if type(result) is CoroutineType:
                refuse_coroutine(result, retry, fn)
            record_success(True)
            return result
        return retry_sync(fn, args, kwargs, start, failure, None)

    return retrying_with_budget


def wrap_async(retry: Retry, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The decorator wrapper of a coroutine function ``fn`` (``retry`` has no ``on_result``)."""
    monotonic = retry._clock.monotonic
    should_retry = retry._should_retry
    retry_async = retry._retry_async
    budget = retry._budget
    if budget is None:

        @functools.wraps(fn)
        async def retrying(*args: Any, **kwargs: Any) -> Any:
            start = monotonic()
            try:
                return await fn(*args, **kwargs)
            except BaseException as e:
                if not should_retry(e):
                    raise
                failure = e
            return await retry_async(fn, args, kwargs, start, failure, None)

        return retrying

    record_success = budget.record_success
    kind = inline_kind(budget, monotonic)
    if kind == INLINE_TOKEN_BUCKET:

        @functools.wraps(fn)
        async def retrying_with_token_bucket(*args: Any, **kwargs: Any) -> Any:
            start = monotonic()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as e:
                if not should_retry(e):
                    raise
                failure = e
            else:
                if budget._refill:  # type: ignore[attr-defined]  # a full bucket records nothing
                    record_success(True)
                return result
            return await retry_async(fn, args, kwargs, start, failure, None)

        return retrying_with_token_bucket

    if kind == INLINE_RATIO:
        advance = budget._advance  # type: ignore[attr-defined]
        pending = budget._pending  # type: ignore[attr-defined]

        @functools.wraps(fn)
        async def retrying_with_ratio_budget(*args: Any, **kwargs: Any) -> Any:
            start = monotonic()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as e:
                if not should_retry(e):
                    raise
                failure = e
            else:
                if start >= budget._roll_due:  # type: ignore[attr-defined]
                    advance(start)
                pending.append(None)  # the call's deposit, at its start (list.append: the cheapest call)
                return result
            return await retry_async(fn, args, kwargs, start, failure, None)

        return retrying_with_ratio_budget

    @functools.wraps(fn)
    async def retrying_with_budget(*args: Any, **kwargs: Any) -> Any:
        start = monotonic()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as e:
            if not should_retry(e):
                raise
            failure = e
        else:
            record_success(True)
            return result
        return await retry_async(fn, args, kwargs, start, failure, None)

    return retrying_with_budget
