"""Regression: a sync function given to ``Retry``'s async path was run again and again before failing.

What was wrong: ``await retry.run(fn)`` awaited whatever ``fn`` returned. For a sync function the ``await`` raises a
``TypeError`` ("object int can't be used in 'await' expression") *after* ``fn`` has run, and with ``on=Exception``
(or a predicate, or any ``on`` covering ``TypeError``) that error was retried: the sync function, side effects and
all, ran ``max_attempts`` times with the backoff sleeps in between, and the call then failed with the same
``TypeError`` anyway. Calling the function again can never make its result awaitable (tenacity's users met the
mirror image, a sync ``Retrying`` around a coroutine function, in tenacity issue #132 and openstack-charmers/zaza
PR #423). Now a result that is not awaitable is a usage error raised at once, naming the function and pointing to
``retry.call``; the async loop checks each attempt the same way, so a function taken for async at decoration (a
``functools.wraps`` adapter that runs a coroutine to completion) is not retried either.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

import stalwart as sw
from stalwart._types import ExceptionSpec
from stalwart.testing import FakeClock


def on_everything(exc: BaseException) -> bool:
    return True


@pytest.mark.parametrize("on", [Exception, TypeError, on_everything])
def test_run_with_a_sync_function_calls_it_once_and_says_why(on: ExceptionSpec) -> None:
    clock = FakeClock()
    calls = []

    def charge() -> int:
        calls.append(1)
        return 42

    with pytest.raises(TypeError, match=r"'.*charge' returned 'int', which is not awaitable.*retry\.call") as info:
        asyncio.run(sw.Retry(on=on, max_attempts=5, clock=clock).run(charge))  # type: ignore[arg-type]
    assert calls == [1]
    assert clock.sleeps == []
    assert isinstance(info.value.__cause__, TypeError)  # the await's own error is kept as the cause


def test_run_with_on_result_uses_the_same_check() -> None:
    calls = []

    def lookup() -> None:
        calls.append(1)

    retry = sw.Retry(on=Exception, on_result=lambda r: r is None, clock=FakeClock())
    with pytest.raises(TypeError, match="not awaitable"):
        asyncio.run(retry.run(lookup))  # type: ignore[arg-type]
    assert calls == [1]


def test_a_sync_adapter_taken_for_async_is_not_retried_past_the_first_retry() -> None:
    clock = FakeClock()
    calls = []

    async def fetch() -> int:
        return 1

    @functools.wraps(fetch)  # a sync adapter that carries the coroutine function it runs
    def fetch_blocking() -> int:
        calls.append(1)
        return 1

    retrying = sw.Retry(on=Exception, max_attempts=10, clock=clock)(fetch_blocking)
    with pytest.raises(TypeError, match="not awaitable"):
        asyncio.run(retrying())  # type: ignore[arg-type]
    assert len(calls) <= 2  # the decorator's first attempt, at most one more: not ten


def test_awaitables_that_fail_are_still_retried() -> None:
    clock = FakeClock()
    calls = []

    def returns_a_future() -> asyncio.Future[int]:
        calls.append(1)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if len(calls) < 3:
            future.set_exception(TypeError("the awaited work failed"))
        else:
            future.set_result(7)
        return future

    async def main() -> int:
        return await sw.Retry(on=TypeError, clock=clock).run(returns_a_future)

    assert asyncio.run(main()) == 7
    assert len(calls) == 3


def test_a_sync_function_that_raises_is_retried_by_run_as_before() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        asyncio.run(sw.Retry(on=OSError, clock=FakeClock()).run(broken))  # type: ignore[arg-type]
    assert len(calls) == 3  # it raised before returning anything: nothing to refuse
