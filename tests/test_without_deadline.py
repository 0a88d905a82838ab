"""sw.without_deadline(): clears the ambient deadline for its body (so tasks created there start without one)."""

from __future__ import annotations

import asyncio

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


def test_clears_and_restores_the_ambient_deadline() -> None:
    clock = FakeClock()
    with sw.deadline(5.0, clock=clock) as outer:
        with sw.without_deadline():
            assert sw.current_deadline() is None
            assert sw.remaining_time() is None
            with sw.deadline(1.0, clock=clock) as inner:  # a scope inside starts afresh
                assert inner is not None
                assert inner.at == 1.0
            assert sw.current_deadline() is None
        assert sw.current_deadline() is outer


def test_restores_on_error_and_outside_any_scope() -> None:
    with pytest.raises(ZeroDivisionError), sw.without_deadline():
        _ = 1 / 0
    assert sw.current_deadline() is None


def test_cannot_be_entered_twice_at_once() -> None:
    scope = sw.without_deadline()
    with scope, pytest.raises(RuntimeError, match="twice"), scope:
        pass


async def test_a_task_created_inside_starts_without_the_deadline_and_its_own_scopes_work() -> None:
    seen: list[sw.Deadline | None] = []

    async def job() -> None:
        seen.append(sw.current_deadline())
        with pytest.raises(sw.DeadlineExceeded):
            async with sw.deadline(0.01):
                await asyncio.sleep(60.0)

    async with sw.deadline(30.0):
        with sw.without_deadline():
            task = asyncio.create_task(job())
        assert sw.current_deadline() is not None
        await task
    assert seen == [None]


async def test_the_enclosing_async_scope_still_cancels_the_current_task() -> None:
    async def body() -> None:
        async with sw.deadline(0.01):
            with sw.without_deadline():
                await asyncio.sleep(60.0)

    with pytest.raises(sw.DeadlineExceeded):
        await body()
