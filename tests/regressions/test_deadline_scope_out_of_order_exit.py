"""Regression: deadline scopes exited out of order left a closed scope's deadline in the context for good.

What was wrong: every scope (``deadline``, ``without_deadline``, the async scope of ``Timeout`` / ``deadline``, the
sync scope of ``Timeout.call``) restored the ambient deadline with ``ContextVar.reset(token)``. A token remembers the
value *before its own* ``set``, so when scopes close out of order (a generator suspended inside ``with deadline(1):``
closed from within a later ``with deadline(5):``, manual ``__enter__`` / ``__exit__`` calls), the last scope to close
restored the deadline of a scope that had already closed: ``current_deadline()`` stayed at the generator's 1 s
deadline for the rest of the thread (or task), and every policy after it gave up at that instant.

Now every scope keeps a record in a chain of the open scopes of its context (each with the value before it): once
every scope has closed the ambient deadline is what it was before the first of them, and while some are open it is
that of the innermost one still open. A closed scope's deadline never comes back. A child task inherits the chain as
it was when it was created, so it keeps its inherited deadline when the parent's scope closes. Peer reports of the
same hazard: PEP 568 / PEP 789 (context changes leaking out of suspended generators), trio's ban on yielding inside
cancel scopes.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

import stalwart as sw
from stalwart._clock import SYSTEM_CLOCK
from stalwart._deadline import ambient_enforced, enter_async_scope, enter_sync_scope, exit_sync_scope
from stalwart.testing import FakeClock


@pytest.fixture(autouse=True)
def _no_ambient_deadline_before() -> None:
    # Sync tests share the thread's context: a deadline leaked by one test would hide the fault in the next.
    assert sw.current_deadline() is None


def test_sync_generator_closed_inside_a_later_scope() -> None:
    clock = FakeClock()

    def gen() -> Iterator[None]:
        with sw.deadline(1.0, clock=clock):
            yield

    g = gen()
    next(g)
    assert sw.current_deadline() is not None
    with sw.deadline(5.0, clock=clock) as outer:
        g.close()
        assert sw.current_deadline() is outer  # the innermost open scope's deadline
    assert sw.current_deadline() is None  # was the generator's 1 s deadline


def test_manual_exits_in_every_order() -> None:
    clock = FakeClock()
    with sw.deadline(100.0, clock=clock) as base:
        for order in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
            scopes = [sw.deadline(s, clock=clock) for s in (30.0, 20.0, 10.0)]
            effective = [scope.__enter__() for scope in scopes]
            open_ = [True, True, True]
            for index in order:
                scopes[index].__exit__(None, None, None)
                open_[index] = False
                innermost = max((i for i in range(3) if open_[i]), default=None)
                expected = base if innermost is None else effective[innermost]
                assert sw.current_deadline() is expected, order
        assert sw.current_deadline() is base


def test_without_deadline_exited_out_of_order() -> None:
    clock = FakeClock()
    outer = sw.deadline(5.0, clock=clock)
    cleared = sw.without_deadline()
    outer_deadline = outer.__enter__()
    cleared.__enter__()
    inner = sw.deadline(1.0, clock=clock)
    inner.__enter__()
    outer.__exit__(None, None, None)  # not innermost: only marks itself
    inner.__exit__(None, None, None)
    assert sw.current_deadline() is None  # without_deadline is the innermost open one
    cleared.__exit__(None, None, None)
    assert sw.current_deadline() is None  # not the closed outer scope's deadline

    cleared = sw.without_deadline()
    cleared.__enter__()
    later = sw.deadline(1.0, clock=clock)
    later.__enter__()
    cleared.__exit__(None, None, None)  # closed first: its None must not come back either
    assert sw.current_deadline() is later.deadline
    later.__exit__(None, None, None)
    assert sw.current_deadline() is None
    assert outer_deadline is not None


def test_sync_timeout_scope_exited_out_of_order() -> None:
    clock = FakeClock()
    outer = enter_sync_scope(5.0, clock)
    assert outer is not None
    gen_scope = sw.deadline(1.0, clock=clock)
    gen_scope.__enter__()
    exit_sync_scope(outer)
    assert sw.current_deadline() is gen_scope.deadline
    gen_scope.__exit__(None, None, None)
    assert sw.current_deadline() is None


async def test_async_generator_closed_inside_a_later_scope() -> None:
    async def agen() -> AsyncIterator[None]:
        async with sw.deadline(30.0):
            yield

    g = agen()
    await anext(g)
    async with sw.deadline(60.0) as outer:  # looser: the generator's scope enforces the effective deadline
        await g.aclose()
        assert sw.current_deadline() is outer  # this open scope's effective deadline stays ...
        assert not ambient_enforced()  # ... but the closed scope no longer enforces it: a Timeout inside does
        scope = enter_async_scope(60.0, SYSTEM_CLOCK, fail_fast=True)
        assert scope is not None
        scope.exit(None)
        assert sw.current_deadline() is outer
    assert sw.current_deadline() is None  # was the generator's deadline, for the rest of the task
    assert not ambient_enforced()
    assert await sw.Timeout(60.0).run(asyncio.sleep, 0.0, "done") == "done"
    assert sw.current_deadline() is None

    g = agen()
    await anext(g)
    async with sw.deadline(10.0) as tighter:  # tighter: enforced by its own timer
        await g.aclose()
        assert sw.current_deadline() is tighter
        assert ambient_enforced()  # the open scope is the enforcer again, not the closed generator's
    assert sw.current_deadline() is None
    assert not ambient_enforced()


async def test_abandoned_async_generator_unwound_by_the_enclosing_scope() -> None:
    async def agen() -> AsyncIterator[int]:
        async with sw.deadline(30.0):
            yield 1
            yield 2

    loop = asyncio.get_running_loop()
    reported: list[object] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async with sw.deadline(60.0):
            async for _ in agen():
                break  # abandoned mid-scope: closed later by the event loop, in a task of its own
            for _ in range(5):
                gc.collect()
                await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []
    assert sw.current_deadline() is None  # the enclosing scope's exit drops the abandoned generator's deadline
    assert not ambient_enforced()


async def test_async_scopes_exited_out_of_order() -> None:
    first = enter_async_scope(30.0, SYSTEM_CLOCK, fail_fast=True)
    second = enter_async_scope(20.0, SYSTEM_CLOCK, fail_fast=True)
    assert first is not None
    assert second is not None
    first.exit(None)
    assert sw.current_deadline() is second.deadline
    assert ambient_enforced()
    second.exit(None)
    assert sw.current_deadline() is None
    assert not ambient_enforced()


async def test_a_child_task_keeps_its_inherited_deadline() -> None:
    inherited: list[sw.Deadline | None] = []
    seen: list[sw.Deadline | None] = []
    parent_closed = asyncio.Event()

    async def child() -> None:
        with sw.deadline(None):
            pass
        await parent_closed.wait()
        # The parent closed the scope this task was created in (out of order): entering and leaving scopes here
        # must not unwind it, as the parent's chain did.
        with sw.deadline(60.0):
            pass
        seen.append(sw.current_deadline())
        async with sw.deadline(60.0):
            pass
        seen.append(sw.current_deadline())
        exit_sync_scope(enter_sync_scope(60.0, SYSTEM_CLOCK))
        seen.append(sw.current_deadline())

    def gen() -> Iterator[None]:
        with sw.deadline(30.0) as mine:
            inherited.append(mine)
            yield

    g = gen()
    next(g)
    task = asyncio.create_task(child())  # created inside the generator's scope: inherits its deadline
    await asyncio.sleep(0)
    with sw.deadline(50.0):
        g.close()  # closed while a later scope is open: marked closed in the parent's chain
        parent_closed.set()
        await task
    assert sw.current_deadline() is None
    assert seen == [inherited[0]] * 3


def test_scope_exited_in_another_context_is_unwound_by_the_enclosing_scope() -> None:
    clock = FakeClock()
    for scope in (sw.deadline(1.0, clock=clock), sw.without_deadline()):
        with sw.deadline(5.0, clock=clock) as outer:
            scope.__enter__()
            inner = sw.current_deadline()
            contextvars.Context().run(scope.__exit__, None, None, None)  # no error, and nothing restored here ...
            assert sw.current_deadline() is inner
            with sw.deadline(None):
                pass
            assert sw.current_deadline() is outer  # ... until a scope inside the enclosing one closes
        assert sw.current_deadline() is None  # or the enclosing scope itself


def test_a_sync_scope_exited_in_another_context_is_unwound_when_the_enclosing_scope_closes() -> None:
    clock = FakeClock()
    scope = sw.deadline(1.0, clock=clock)
    with sw.deadline(5.0, clock=clock):
        scope.__enter__()
        contextvars.Context().run(scope.__exit__, None, None, None)
    assert sw.current_deadline() is None
