"""Regression: a sync/async mix-up inside a pipeline was answered by the fallback, or retried, as if it were a failure.

What was wrong: the refusals of a sync/async mix-up (a sync path given a function that returns a coroutine; an async
path given a function whose result cannot be awaited) were plain ``TypeError`` s raised *inside* the outer policies.
``Pipeline(Fallback(value=...)).call(async_fn)`` returned the fallback value (the coroutine was closed, never run,
and nothing said so); ``Pipeline(Fallback(...), Retry(on=Exception)).call(async_fn)`` called the function once per
attempt, with the backoff sleeps in between, before the fallback hid it; ``Fallback(value=...).run(sync_fn)`` and
``Pipeline(Fallback(...), Timeout(5)).run(sync_fn)`` ran the sync function and answered the ``await``'s own
``TypeError`` with the fallback; ``Pipeline(Retry(on=Exception), Timeout(5)).run(sync_fn)`` ran the sync function
``max_attempts`` times; and a breaker counted the mix-up as a failure of the dependency. Calling the function again
can never change its kind, and a fallback value for a call that was never made hides a bug (tenacity issue #132:
a function returning a coroutine "retried" as a sync one; Polly's fallback handles only what the strategy's
``ShouldHandle`` names, and stalwart's policies already exclude cancellation the same way). Now the refusals raise a
``TypeError`` subclass that no ``on=`` (type, tuple or predicate) matches, and a pipeline's innermost async stage
refuses a result that cannot be awaited itself, naming the user's function.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


def everything(exc: BaseException) -> bool:
    return True


def _policies(kind: str, clock: FakeClock) -> list[sw.Policy]:
    """Outer policies that answer or retry every ``Exception``, in front of the stage that refuses."""
    fallback = sw.Fallback(value="fallback", on=everything)
    retry = sw.Retry(on=Exception, max_attempts=3, clock=clock)
    if kind == "fallback":
        return [fallback]
    if kind == "retry":
        return [retry]
    return [fallback, retry]


@pytest.mark.parametrize("outer", ["fallback", "retry", "fallback+retry"])
@pytest.mark.parametrize("inner", [[], ["timeout"]])
def test_sync_pipeline_given_a_coroutine_function_raises_once(outer: str, inner: list[str]) -> None:
    clock = FakeClock()
    calls: list[int] = []

    async def charge() -> int:
        calls.append(1)
        return 1

    def charge_later() -> Any:  # a plain function returning a coroutine: only the result tells
        calls.append(1)
        return charge()

    policies = _policies(outer, clock) + [sw.Timeout(5, clock=clock) for _ in inner]
    pipeline = sw.Pipeline(*policies)
    with pytest.raises(TypeError, match="returned a coroutine"):
        pipeline.call(charge_later)
    assert calls == [1]  # the function ran once; the coroutine was closed, never run
    assert clock.sleeps == []


@pytest.mark.parametrize("outer", ["fallback", "retry", "fallback+retry"])
@pytest.mark.parametrize("inner", [[], ["timeout"]])
def test_async_pipeline_given_a_sync_function_raises_once(outer: str, inner: list[str]) -> None:
    clock = FakeClock()
    calls: list[int] = []

    def lookup() -> int:
        calls.append(1)
        return 42

    policies = _policies(outer, clock) + [sw.Timeout(5, clock=clock) for _ in inner]
    pipeline = sw.Pipeline(*policies)
    with pytest.raises(TypeError, match=r"'.*lookup' returned 'int', which is not awaitable"):
        asyncio.run(pipeline.run(lookup))  # type: ignore[arg-type]
    assert calls == [1]
    assert clock.sleeps == []


def test_fallback_run_given_a_sync_function_raises() -> None:
    calls: list[int] = []

    def lookup() -> int:
        calls.append(1)
        return 42

    with pytest.raises(TypeError, match=r"'.*lookup' returned 'int', which is not awaitable.*fallback\.call") as info:
        asyncio.run(sw.Fallback(value="fallback").run(lookup))  # type: ignore[arg-type]
    assert calls == [1]
    assert isinstance(info.value.__cause__, TypeError)  # the await's own error is kept


def test_fallback_outside_a_fallback_whose_handler_returns_a_coroutine() -> None:
    async def build(exc: BaseException) -> str:
        return "late"

    def handler(exc: BaseException) -> Any:  # a plain function returning a coroutine
        return build(exc)

    def fail() -> str:
        raise ConnectionError

    pipeline = sw.Pipeline(sw.Fallback(value="outer", on=everything), sw.Fallback(handler=handler))
    with pytest.raises(TypeError, match="returned a coroutine"):
        pipeline.call(fail)


def test_breaker_does_not_count_the_mix_up_as_a_failure() -> None:
    clock = FakeClock()
    breaker = sw.CircuitBreaker(name="mixup", failure_threshold=1, clock=clock)

    async def charge() -> int:
        return 1

    def charge_later() -> Any:
        return charge()

    for _ in range(3):
        with pytest.raises(TypeError, match="returned a coroutine"):
            sw.Pipeline(breaker, sw.Timeout(5, clock=clock)).call(charge_later)
    assert breaker.state is sw.CircuitState.CLOSED


def test_genuine_type_errors_are_still_answered_and_retried() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def broken() -> int:
        calls.append(1)
        raise TypeError("a bug of the function's own")

    pipeline = sw.Pipeline(sw.Fallback(value="fallback"), sw.Retry(on=TypeError, max_attempts=3, clock=clock))
    assert pipeline.call(broken) == "fallback"
    assert calls == [1, 1, 1]

    async def broken_async() -> int:
        calls.append(2)
        raise TypeError("a bug of the function's own")

    assert asyncio.run(pipeline.run(broken_async)) == "fallback"
    assert calls == [1, 1, 1, 2, 2, 2]
