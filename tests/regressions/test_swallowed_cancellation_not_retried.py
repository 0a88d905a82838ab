"""Regression: an attempt that swallowed its task's cancellation was retried, and the retry outlived the cancel.

What was wrong: asyncio delivers a cancellation once. When an attempt caught the ``CancelledError`` and ended with
something retryable instead (a driver that turns it into its own connection error, an ``except`` that returns a
retryable result), ``Retry`` slept its backoff and ran the remaining attempts as if nothing had happened: under
``asyncio.timeout(0.1)`` a call ran its second attempt to completion 10 s later and *returned successfully*, the
timeout silently defeated; ``Task.cancel()`` and a ``TaskGroup`` whose sibling failed were ignored the same way.
DESIGN.md: cancellation is never retried and never swallowed; Polly's retry checks its cancellation token before
every retry for the same reason. Now a retryable outcome while the task has a cancellation request outstanding
(``Task.cancelling() > 0``) stops the retries and raises ``CancelledError`` from that outcome, in the decorator,
``run`` and the ``async for`` block form (``asyncio.timeout`` turns it into its ``TimeoutError`` as usual). A
timeout *inside* the attempt withdraws its request before its error reaches the retry, so it is still retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Disconnected(ConnectionError):
    pass


class Driver:
    """A client that turns the cancellation of a pending request into its own connection error."""

    def __init__(self) -> None:
        self.calls = 0
        self.waiting = asyncio.Event()

    async def request(self) -> str:
        self.calls += 1
        if self.calls > 1:
            return "ok"  # a retry would succeed at once, after the caller gave up on the call
        self.waiting.set()
        try:
            await asyncio.Event().wait()  # the first request never answers
        except asyncio.CancelledError:
            raise Disconnected("connection closed") from None
        return "unreachable"


def forms(retry: sw.Retry) -> dict[str, Callable[[Driver], Awaitable[object]]]:
    async def block(driver: Driver) -> object:
        async for attempt in retry.attempts():
            async with attempt:
                return await driver.request()
        return None

    return {
        "run": lambda driver: retry.run(driver.request),
        "decorator": lambda driver: retry(driver.request)(),
        "block": block,
    }


FORMS = ["run", "decorator", "block"]


@pytest.mark.parametrize("form", FORMS)
async def test_task_cancel_is_not_retried(form: str) -> None:
    driver = Driver()
    call = forms(sw.Retry(on=Disconnected, max_attempts=5, clock=FakeClock()))[form]
    task = asyncio.ensure_future(call(driver))
    await driver.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert driver.calls == 1


@pytest.mark.parametrize("form", FORMS)
async def test_an_outer_asyncio_timeout_is_not_outlived(form: str) -> None:
    driver = Driver()
    call = forms(sw.Retry(on=Disconnected, max_attempts=5, clock=FakeClock()))[form]
    with pytest.raises(TimeoutError) as info:
        async with asyncio.timeout(0):
            await call(driver)
    assert driver.calls == 1
    assert isinstance(info.value.__cause__, asyncio.CancelledError)  # the timeout's own conversion


async def test_a_task_group_sibling_failure_is_not_outlived() -> None:
    driver = Driver()
    retry = sw.Retry(on=Disconnected, max_attempts=5, clock=FakeClock())

    async def sibling() -> None:
        await driver.waiting.wait()
        raise KeyError("sibling failed")

    with pytest.raises(ExceptionGroup) as info:  # noqa: PT012
        async with asyncio.TaskGroup() as group:
            group.create_task(retry.run(driver.request))
            group.create_task(sibling())
    assert [type(e) for e in info.value.exceptions] == [KeyError]
    assert driver.calls == 1


async def test_a_swallowed_cancellation_returning_a_retryable_result_is_not_retried() -> None:
    calls = []
    waiting = asyncio.Event()

    async def lookup() -> str | None:
        calls.append(1)
        waiting.set()
        if len(calls) > 1:
            return "ok"
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return None  # "no answer": retryable by on_result
        return "unreachable"

    retry = sw.Retry(on=OSError, on_result=lambda r: r is None, max_attempts=5, clock=FakeClock())
    task = asyncio.ensure_future(retry.run(lookup))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls) == 1


@pytest.mark.parametrize("form", FORMS)
async def test_a_timeout_inside_the_attempt_is_still_retried(form: str) -> None:
    calls = []

    async def slow() -> str:
        calls.append(1)
        if len(calls) < 3:
            async with asyncio.timeout(0):  # a per-attempt timeout: its request is withdrawn on exit
                await asyncio.Event().wait()
        return "ok"

    retry = sw.Retry(on=TimeoutError, max_attempts=5, clock=FakeClock())
    if form == "run":
        assert await retry.run(slow) == "ok"
    elif form == "decorator":
        assert await retry(slow)() == "ok"
    else:
        async for attempt in retry.attempts():
            async with attempt:
                assert await slow() == "ok"
    assert len(calls) == 3
