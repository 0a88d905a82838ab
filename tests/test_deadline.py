"""Async deadline scopes: expiry, cancellation from outside, nesting, enforcement of the ambient deadline.

Real timers of a few hundredths of a second drive the cancellation path only; nothing asserts on durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import stalwart as sw
from stalwart._deadline import ambient_enforced

FOREVER = 60.0  # a sleep that must be cut short (pytest-timeout would catch a hang)


@pytest.fixture
def events() -> Iterator[list[sw.Event]]:
    seen: list[sw.Event] = []
    hook = seen.append  # one bound-method object: remove_hook compares by identity
    sw.add_hook(hook)
    yield seen
    sw.remove_hook(hook)


async def test_expiry_raises_deadline_exceeded_and_resets_the_context(events: list[sw.Event]) -> None:
    async def body() -> None:
        async with sw.deadline(0.01) as d:
            assert sw.current_deadline() is d
            await asyncio.sleep(FOREVER)

    with pytest.raises(sw.DeadlineExceeded) as info:
        await body()
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert info.value.timeout == 0.01
    assert sw.current_deadline() is None
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert events == [sw.DeadlineExpired(0.01)]


async def test_no_expiry_no_error_and_no_event(events: list[sw.Event]) -> None:
    async with sw.deadline(FOREVER) as d:
        await asyncio.sleep(0)
    assert d is not None
    assert sw.current_deadline() is None
    assert events == []


async def test_outer_cancellation_passes_untouched() -> None:
    started = asyncio.Event()

    async def body() -> None:
        async with sw.deadline(FOREVER):
            started.set()
            await asyncio.sleep(FOREVER)

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_outer_cancellation_arriving_with_the_expiry_wins() -> None:
    async def body() -> None:
        async with sw.deadline(0.01):
            try:
                await asyncio.sleep(FOREVER)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                assert task is not None
                task.cancel()  # a cancellation from outside arrives as well
                raise

    task = asyncio.create_task(body())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_swallowed_expiry_leaves_no_pending_cancellation() -> None:
    async with sw.deadline(0.01):
        try:
            await asyncio.sleep(FOREVER)
        except asyncio.CancelledError:
            pass
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # not cancelled again


async def test_looser_inner_scope_lets_the_outer_scope_fire_as_its_own_error() -> None:
    async def body() -> None:
        async with sw.deadline(0.01) as outer, sw.deadline(FOREVER) as inner:
            assert inner is outer
            assert sw.current_deadline() is outer
            await asyncio.sleep(FOREVER)

    with pytest.raises(sw.DeadlineExceeded) as info:
        await body()
    assert info.value.timeout == 0.01


async def test_tighter_inner_scope_fires_alone() -> None:
    async def body(outer: sw.Deadline | None) -> None:
        async with sw.deadline(0.01) as inner:
            assert inner is not None
            assert outer is not None
            assert inner.at < outer.at
            await asyncio.sleep(FOREVER)

    async with sw.deadline(FOREVER) as outer:
        with pytest.raises(sw.DeadlineExceeded) as info:
            await body(outer)
        assert info.value.timeout == 0.01
        assert sw.current_deadline() is outer
        await asyncio.sleep(0)  # the outer scope is intact


async def test_async_scope_enforces_a_tighter_unenforced_ambient_deadline() -> None:
    # A sync scope in async code only sets the ambient deadline; the async scope inside enforces it.
    async def body(ambient: sw.Deadline | None) -> None:
        async with sw.deadline(FOREVER) as inner:
            assert inner is ambient
            await asyncio.sleep(FOREVER)

    with sw.deadline(0.02) as ambient, pytest.raises(sw.DeadlineExceeded) as info:
        await body(ambient)
    assert info.value.timeout is not None
    assert 0 < info.value.timeout <= 0.02


async def test_child_task_enforces_the_inherited_deadline_itself() -> None:
    async def child() -> None:
        assert sw.current_deadline() is not None
        assert not ambient_enforced()  # inherited, but the parent's scope cancels the parent only
        async with sw.deadline(FOREVER):
            assert ambient_enforced()
            await asyncio.sleep(FOREVER)

    tasks: list[asyncio.Task[None]] = []

    async def parent() -> None:
        async with sw.deadline(0.02):
            assert ambient_enforced()
            tasks.append(asyncio.create_task(child()))
            await asyncio.wait(tasks)

    with pytest.raises(sw.DeadlineExceeded):
        await parent()
    with pytest.raises(sw.DeadlineExceeded):
        await tasks[0]


async def test_already_expired_ambient_deadline_cancels_at_the_first_await() -> None:
    reached = []

    async def body() -> None:
        async with sw.deadline(FOREVER):
            reached.append(1)
            await asyncio.sleep(FOREVER)

    with sw.deadline(0.0), pytest.raises(sw.DeadlineExceeded):
        await body()
    assert reached == [1]


async def test_unlimited_async_scope_sets_nothing() -> None:
    async with sw.deadline(None) as d:
        assert d is None
        assert not ambient_enforced()
    with sw.deadline(FOREVER) as ambient:
        async with sw.deadline(None) as d2:
            assert d2 is ambient
            assert not ambient_enforced()


async def test_sync_form_in_async_code_only_sets_the_ambient_deadline() -> None:
    with sw.deadline(0.001) as d:
        assert not ambient_enforced()
        await asyncio.sleep(0.01)  # not cancelled: nothing enforces a sync scope
    assert d is not None
    assert d.expired


async def test_async_scope_cannot_be_entered_twice() -> None:
    scope = sw.deadline(FOREVER)
    async with scope:
        pass
    with pytest.raises(RuntimeError, match="twice"):
        async with scope:
            pass
