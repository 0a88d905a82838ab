"""Regression: a policy could be silently bypassed when an async callable was not recognised as one.

What was wrong: decoration chose the sync wrapper for a ``functools.partial`` of an object whose ``__call__`` is
``async`` (``inspect.iscoroutinefunction`` unwraps partials but only checks functions), and for an async function
behind a plain (non-``functools.wraps``) decorator; ``policy.call(async_fn)`` was accepted too. The sync path then
returned the coroutine unawaited: the caller awaited it and the work ran outside the retry, the timeout, the
bulkhead slot and the fallback, with no error anywhere (tenacity issue #132, "Better API for coroutine-returning
function?", and #338, "Retry decorator does not play well with other decorators"). The other way round, a callable
object that runs a coroutine to completion synchronously but carries the coroutine function as ``__wrapped__`` (a
"sync from async" adapter) was taken for async, and the decorated function returned a coroutine to sync code.
A ``staticmethod`` object was accepted and then bound as an instance method (backoff issue #200).

Now detection looks through partials and at callable objects' ``__call__``, every sync entry point refuses a
coroutine result with ``TypeError`` (closing it), a Fallback's plain handler that returns an awaitable is awaited
on the async path, and ``staticmethod``/``classmethod`` objects are refused at decoration with a clear message.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Flaky(Exception):
    pass


class AsyncCallable:
    """An object with an ``async def __call__`` that fails twice, then answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, value: int) -> int:
        self.calls += 1
        if self.calls < 3:
            raise Flaky
        return value


def policies() -> list[sw.Policy]:
    return [
        sw.Retry(on=Flaky, clock=FakeClock()),
        sw.Timeout(10.0),
        sw.Bulkhead("detect"),
        sw.Fallback(value="fallback", on=LookupError),
        sw.Pipeline(sw.Timeout(10.0), sw.Retry(on=Flaky, clock=FakeClock())),
    ]


def decorating_policies() -> list[sw.Policy]:
    return [*policies(), sw.AdaptiveTimeout()]


async def test_a_partial_of_an_async_callable_object_is_decorated_as_async() -> None:
    target = AsyncCallable()
    retrying = sw.Retry(on=Flaky, clock=FakeClock())(functools.partial(target, 7))
    assert inspect.iscoroutinefunction(retrying)
    assert await retrying() == 7
    assert target.calls == 3


@pytest.mark.parametrize("policy", decorating_policies(), ids=repr)
async def test_every_policy_decorates_a_partial_of_an_async_callable_as_async(policy: sw.Policy) -> None:
    target = AsyncCallable()
    target.calls = 2  # succeeds at once
    decorated = policy(functools.partial(target, 5))
    assert inspect.iscoroutinefunction(decorated)
    assert await decorated() == 5


def plain_decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:  # no functools.wraps: nothing to see through
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("policy", policies(), ids=repr)
def test_a_sync_decorated_function_returning_a_coroutine_is_refused(policy: sw.Policy) -> None:
    @plain_decorator
    async def work() -> str:
        return "never"

    decorated = policy(work)
    with pytest.raises(TypeError, match="returned a coroutine"):
        decorated()  # the coroutine is closed: no "never awaited" warning (warnings are errors here)


@pytest.mark.parametrize("policy", policies(), ids=repr)
def test_call_refuses_a_coroutine_function(policy: sw.Policy) -> None:
    async def work() -> str:
        return "never"

    with pytest.raises(TypeError, match="returned a coroutine"):
        policy.call(work)


def test_a_refused_coroutine_is_not_retried() -> None:
    calls = []

    async def work() -> None:
        calls.append(1)
        raise Flaky

    with pytest.raises(TypeError):
        sw.Retry(on=Exception, clock=FakeClock()).call(work)
    assert calls == []  # created, closed, never run


class SyncFromAsync:
    """Runs a coroutine function to completion on a private loop; keeps it as ``__wrapped__`` (update_wrapper)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return asyncio.run(self.fn(*args))


def test_a_sync_adapter_carrying_an_async_wrapped_is_decorated_as_sync() -> None:
    async def double(value: int) -> int:
        return 2 * value

    decorated = sw.Retry(on=Flaky)(SyncFromAsync(double))
    assert not inspect.iscoroutinefunction(decorated)
    assert decorated(4) == 8


async def test_a_functools_wraps_pass_through_decorator_stays_async() -> None:
    def traced(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            return fn(*args)  # returns the coroutine, as tracing decorators do

        return wrapper

    target = AsyncCallable()

    @traced
    async def work(value: int) -> int:
        return await target(value)

    retrying = sw.Retry(on=Flaky, clock=FakeClock())(work)
    assert await retrying(3) == 3
    assert target.calls == 3


async def test_a_plain_fallback_handler_returning_a_coroutine_is_awaited() -> None:
    async def answer(exc: BaseException) -> str:
        return f"fallback for {type(exc).__name__}"

    async def fails() -> str:
        raise Flaky

    fallback = sw.Fallback(handler=lambda exc: answer(exc))
    assert await fallback.run(fails) == "fallback for Flaky"
    partial_object = sw.Fallback(handler=functools.partial(AsyncCallable(), 9), on=Flaky)
    with pytest.raises(TypeError, match="sync"):
        partial_object.call(lambda: (_ for _ in ()).throw(Flaky()))


def test_a_sync_fallback_handler_returning_a_coroutine_is_refused() -> None:
    async def answer(exc: BaseException) -> str:
        return "never"

    def fails() -> str:
        raise Flaky

    with pytest.raises(TypeError, match="returned a coroutine"):
        sw.Fallback(handler=lambda exc: answer(exc)).call(fails)


def test_a_class_with_an_async_call_is_a_sync_callable() -> None:
    class Client:
        async def __call__(self) -> None:
            return None

    make = sw.Retry(on=Flaky)(Client)  # calling the class builds an instance: sync
    assert not inspect.iscoroutinefunction(make)
    assert isinstance(make(), Client)


@pytest.mark.parametrize("descriptor", [staticmethod, classmethod])
@pytest.mark.parametrize("policy", decorating_policies(), ids=repr)
def test_staticmethod_and_classmethod_objects_are_refused_with_advice(
    policy: sw.Policy, descriptor: Callable[[Any], Any]
) -> None:
    async def method(*args: Any) -> None:
        return None

    with pytest.raises(TypeError, match=f"@{descriptor.__name__} above the policy"):
        policy(descriptor(method))


async def test_the_advised_order_works_for_static_and_class_methods() -> None:
    class Service:
        @staticmethod
        @sw.Retry(on=Flaky, clock=FakeClock())
        async def static(value: int) -> int:
            return value

        @classmethod
        @sw.Retry(on=Flaky, clock=FakeClock())
        async def klass(cls, value: int) -> tuple[type, int]:
            return cls, value

    assert await Service().static(1) == 1
    assert await Service.klass(2) == (Service, 2)


@pytest.mark.parametrize("policy", decorating_policies(), ids=repr)
def test_a_callable_object_with_a_generator_call_is_refused(policy: sw.Policy) -> None:
    class Produces:
        def __call__(self) -> Any:
            yield 1

    with pytest.raises(TypeError, match="generator"):
        policy(functools.partial(Produces()))


def test_a_pipeline_decorates_a_sync_adapter_as_sync_at_every_layer() -> None:
    """Each layer's wrapper carries ``__wrapped__``: following it through the adapter object found the coroutine
    function behind it, so the outer layers of a pipeline took the adapter for async."""

    async def double(value: int) -> int:
        return 2 * value

    decorated = sw.Pipeline(sw.Timeout(5.0), sw.Retry(on=Flaky), sw.Bulkhead("adapter"))(SyncFromAsync(double))
    assert not inspect.iscoroutinefunction(decorated)
    assert decorated(21) == 42
