"""Regression: a deadline scope that could no longer cancel anything was trusted to enforce the ambient deadline.

What was wrong: an ``async`` scope (``deadline``, ``Timeout``) cancels its task once, when its timer fires. When
the body swallowed that cancellation (a driver that turns ``CancelledError`` into its own connection error, an
``except`` that answers with a fallback), the scope stayed open with its timer spent, yet ``enter_async_scope`` and
``ambient_enforced`` still named it as the enforcer of the ambient deadline: a later ``Timeout(5)`` or
``deadline(5)`` in the same scope set **no timer at all** ("the enclosing scope's expiry is its error") and a hung
call ran forever, and a ``Bulkhead`` queued past the deadline. Second form of the same trust: a ``Timeout`` whose
ambient deadline had already passed started its call anyway when an enclosing scope's timer had not run yet (the
loop was busy), while the docs promise "a call whose ambient deadline has already passed is not started".

Now a scope is trusted as the enforcer only while its timer is pending (not fired, not cancelled), and the
already-passed check comes first. ``asyncio.timeout`` behaves alike: a nested timeout always sets its own timer.
"""

from __future__ import annotations

import asyncio

import pytest

import stalwart as sw
from stalwart._clock import SYSTEM_CLOCK
from stalwart._deadline import ambient_enforced, enter_async_scope
from stalwart.testing import FakeClock

FOREVER = 60.0  # a sleep that must be cut short (pytest-timeout would catch a hang)


async def swallow_the_expiry() -> None:
    try:
        await asyncio.sleep(FOREVER)
    except asyncio.CancelledError:
        pass  # the body swallows the scope's cancellation (asyncio delivers it once)


async def test_a_fired_scope_is_not_the_enforcer() -> None:
    async with sw.deadline(0.01):
        await swallow_the_expiry()
        assert not ambient_enforced()
        scope = enter_async_scope(FOREVER, SYSTEM_CLOCK, fail_fast=False)
        assert scope is not None  # a looser scope sets a timer of its own
        scope.exit(None)


async def test_a_later_timeout_is_not_started_once_the_deadline_passed() -> None:
    started: list[int] = []

    async def call() -> None:
        started.append(1)
        await asyncio.sleep(FOREVER)

    async with sw.deadline(0.01):  # its body swallowed the expiry: the scope itself ends without an error
        await swallow_the_expiry()
        with pytest.raises(sw.DeadlineExceeded) as info:
            await sw.Timeout(FOREVER).run(call)  # used to run forever: no timer set
        assert info.value.timeout == 0.0
        with pytest.raises(sw.DeadlineExceeded):
            await sw.Timeout(FOREVER)(call)()
    assert started == []
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_later_deadline_scope_is_cut_at_its_first_await() -> None:
    reached: list[str] = []
    async with sw.deadline(0.01):
        await swallow_the_expiry()
        with pytest.raises(sw.DeadlineExceeded):  # noqa: PT012 - the scope is the code under test
            async with sw.deadline(FOREVER):  # used to set no timer: the sleep ran to its end
                await asyncio.sleep(FOREVER)
                reached.append("end")
    assert reached == []
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_passed_deadline_whose_timer_has_not_run_starts_no_call() -> None:
    clock = FakeClock()
    started: list[int] = []

    async def call() -> str:
        started.append(1)
        return "ran"

    async with sw.deadline(FOREVER, clock=clock):
        clock.advance(FOREVER + 1.0)  # passed on its clock; the enclosing scope's timer has not run
        with pytest.raises(sw.DeadlineExceeded):
            await sw.Timeout(1.0, clock=clock).run(call)
        with pytest.raises(sw.DeadlineExceeded):
            await sw.Timeout(1.0, clock=clock)(call)()
    assert started == []
