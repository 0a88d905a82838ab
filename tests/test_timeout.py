"""Timeout (async and sync) and with_timeout.

Real timers of a hundredth of a second drive the async cancellation path only; sync behaviour runs on a FakeClock.
Nothing asserts on durations.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Iterator
from datetime import timedelta

import pytest

import stalwart as sw
from stalwart.testing import FakeClock

FOREVER = 60.0


@pytest.fixture
def events() -> Iterator[list[sw.Event]]:
    seen: list[sw.Event] = []
    hook = seen.append  # one bound-method object: remove_hook compares by identity
    sw.add_hook(hook)
    yield seen
    sw.remove_hook(hook)


async def add(a: int, b: int = 0, *, c: int = 0) -> int:
    await asyncio.sleep(0)
    return a + b + c


# -- construction -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan, math.inf])
def test_invalid_seconds_are_value_errors(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        sw.Timeout(bad)


@pytest.mark.parametrize("bad", ["1", None, True])
def test_wrong_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="seconds"):
        sw.Timeout(bad)  # type: ignore[arg-type]


def test_timedelta_is_normalised() -> None:
    assert sw.Timeout(timedelta(milliseconds=1500)).seconds == 1.5
    assert repr(sw.Timeout(2)) == "Timeout(2.0)"


# -- async ------------------------------------------------------------------------------------------------------


async def test_run_returns_the_result_and_passes_arguments() -> None:
    assert await sw.Timeout(FOREVER).run(add, 1, 2, c=3) == 6


async def test_expiry_cancels_the_call_and_raises_deadline_exceeded(events: list[sw.Event]) -> None:
    seen: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    with pytest.raises(sw.DeadlineExceeded) as info:
        await sw.Timeout(0.01).run(slow)
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == 0.01
    assert seen == ["cancelled"]
    assert events == [sw.DeadlineExpired(0.01)]
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert sw.current_deadline() is None


async def test_outer_cancellation_passes_untouched() -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(FOREVER)

    task = asyncio.create_task(sw.Timeout(FOREVER).run(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_the_call_sees_its_deadline_as_the_ambient_deadline() -> None:
    async def probe() -> sw.Deadline | None:
        return sw.current_deadline()

    clock = FakeClock(10.0)
    inner = await sw.Timeout(2.0, clock=clock).run(probe)
    assert inner is not None
    assert inner.at == 12.0
    assert inner.clock is clock
    assert sw.current_deadline() is None


async def test_a_tighter_ambient_deadline_stays_the_ambient_deadline() -> None:
    async def probe() -> sw.Deadline | None:
        return sw.current_deadline()

    clock = FakeClock()
    with sw.deadline(1.0, clock=clock) as ambient:
        assert await sw.Timeout(5.0, clock=clock).run(probe) is ambient
        tighter = await sw.Timeout(0.5, clock=clock).run(probe)
        assert tighter is not None
        assert tighter.at == 0.5


async def test_a_tighter_enforced_outer_deadline_fires_as_the_outer_error() -> None:
    with pytest.raises(sw.DeadlineExceeded) as info:
        async with sw.deadline(0.01):
            await sw.Timeout(FOREVER).run(asyncio.sleep, FOREVER)
    assert info.value.timeout == 0.01

    with pytest.raises(sw.DeadlineExceeded) as info2:
        await sw.Timeout(0.01).run(sw.Timeout(FOREVER).run, asyncio.sleep, FOREVER)
    assert info2.value.timeout == 0.01


async def test_a_tighter_unenforced_ambient_deadline_is_enforced_by_the_timeout() -> None:
    with sw.deadline(0.01), pytest.raises(sw.DeadlineExceeded) as info:
        await sw.Timeout(FOREVER).run(asyncio.sleep, FOREVER)
    assert info.value.timeout is not None
    assert info.value.timeout <= 0.01


async def test_an_expired_ambient_deadline_means_the_call_is_not_started(events: list[sw.Event]) -> None:
    calls = []

    async def fn() -> None:
        calls.append(1)

    clock = FakeClock()
    with sw.deadline(1.0, clock=clock):
        clock.advance(1.0)
        with pytest.raises(sw.DeadlineExceeded):
            await sw.Timeout(5.0, clock=clock).run(fn)
        with pytest.raises(sw.DeadlineExceeded):
            await sw.Timeout(5.0, clock=clock)(fn)()
    assert calls == []
    assert events == [sw.DeadlineExpired(0.0), sw.DeadlineExpired(0.0)]


async def test_an_exception_of_the_call_propagates_unchanged() -> None:
    async def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await sw.Timeout(FOREVER).run(boom)
    assert sw.current_deadline() is None


async def test_a_call_that_swallows_the_cancellation_returns_its_result() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            return "finished anyway"
        return "never"

    assert await sw.Timeout(0.01).run(stubborn) == "finished anyway"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_decorator_async() -> None:
    @sw.Timeout(FOREVER)
    async def decorated(a: int, *, c: int = 0) -> int:
        """Doc."""
        return await add(a, c=c)

    assert inspect.iscoroutinefunction(decorated)
    assert decorated.__name__ == "decorated"
    assert decorated.__doc__ == "Doc."
    assert await decorated(1, c=2) == 3

    @sw.Timeout(0.01)
    async def slow() -> None:
        await asyncio.sleep(FOREVER)

    with pytest.raises(sw.DeadlineExceeded):
        await slow()


async def test_one_instance_guards_concurrent_calls_independently() -> None:
    timeout = sw.Timeout(0.02)

    async def maybe_slow(slow: bool) -> str:
        if slow:
            await asyncio.sleep(FOREVER)
        await asyncio.sleep(0)
        return "ok"

    results = await asyncio.gather(
        timeout.run(maybe_slow, True), timeout.run(maybe_slow, False), return_exceptions=True
    )
    assert isinstance(results[0], sw.DeadlineExceeded)
    assert results[1] == "ok"


def test_generators_are_refused() -> None:
    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        sw.Timeout(1.0)(gen)


# -- sync -------------------------------------------------------------------------------------------------------


def test_call_sets_the_ambient_deadline_and_restores_it() -> None:
    clock = FakeClock(3.0)
    seen: list[sw.Deadline | None] = []
    assert sw.Timeout(2.0, clock=clock).call(lambda: seen.append(sw.current_deadline())) is None
    assert seen[0] is not None
    assert seen[0].at == 5.0
    assert sw.current_deadline() is None


def test_call_returns_a_late_result() -> None:
    clock = FakeClock()

    def slow() -> str:
        clock.advance(10.0)  # far beyond the limit: sync code cannot be pre-empted
        return "late"

    assert sw.Timeout(1.0, clock=clock).call(slow) == "late"


def test_call_keeps_a_tighter_ambient_deadline() -> None:
    clock = FakeClock()
    with sw.deadline(1.0, clock=clock) as ambient:
        assert sw.Timeout(5.0, clock=clock).call(sw.current_deadline) is ambient
        tighter = sw.Timeout(0.25, clock=clock).call(sw.current_deadline)
        assert tighter is not None
        assert tighter.at == 0.25
        assert sw.current_deadline() is ambient


def test_call_is_not_started_when_the_ambient_deadline_has_passed(events: list[sw.Event]) -> None:
    clock = FakeClock()
    calls: list[int] = []
    with sw.deadline(1.0, clock=clock):
        clock.advance(2.0)
        with pytest.raises(sw.DeadlineExceeded):
            sw.Timeout(1.0, clock=clock).call(calls.append, 1)
    assert calls == []
    assert events == [sw.DeadlineExpired(0.0)]


def test_call_restores_the_context_on_error() -> None:
    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        sw.Timeout(1.0).call(boom)
    assert sw.current_deadline() is None


def test_decorator_sync() -> None:
    clock = FakeClock()

    @sw.Timeout(2.0, clock=clock)
    def probe(x: int) -> tuple[int, float | None]:
        d = sw.current_deadline()
        return x, None if d is None else d.at

    assert not inspect.iscoroutinefunction(probe)
    assert probe(7) == (7, 2.0)
    assert probe.__name__ == "probe"


# -- with_timeout -----------------------------------------------------------------------------------------------


async def test_with_timeout_returns_the_result() -> None:
    assert await sw.with_timeout(add(2, 3), 1.0) == 5
    assert await sw.with_timeout(add(2, 3), timedelta(seconds=1), fallback="unused") == 5


async def test_with_timeout_raises_without_a_fallback() -> None:
    with pytest.raises(sw.DeadlineExceeded):
        await sw.with_timeout(asyncio.sleep(FOREVER), 0.01)


async def test_with_timeout_returns_the_fallback_on_expiry() -> None:
    assert await sw.with_timeout(asyncio.sleep(FOREVER), 0.01, fallback="cached") == "cached"


async def test_with_timeout_cancels_a_task_on_expiry() -> None:
    task = asyncio.create_task(asyncio.sleep(FOREVER))
    assert await sw.with_timeout(task, 0.01, fallback=None) is None
    assert task.cancelled()


async def test_with_timeout_does_not_answer_for_the_awaitables_own_deadline_exceeded() -> None:
    async def inner_timeout() -> None:
        raise sw.DeadlineExceeded("from inside", timeout=1.0)

    with pytest.raises(sw.DeadlineExceeded, match="from inside"):
        await sw.with_timeout(inner_timeout(), FOREVER, fallback="no")


async def test_with_timeout_leaves_an_enforced_outer_deadline_to_its_scope() -> None:
    with pytest.raises(sw.DeadlineExceeded) as info:
        async with sw.deadline(0.01):
            await sw.with_timeout(asyncio.sleep(FOREVER), FOREVER, fallback="no")
    assert info.value.timeout == 0.01


async def test_with_timeout_closes_the_coroutine_on_invalid_seconds() -> None:
    coro = add(1)
    with pytest.raises(ValueError, match="seconds"):
        await sw.with_timeout(coro, -1)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
