"""Regression: a deadline scope left open in an abandoned async generator disabled every later Timeout of the task.

What was wrong: ``async with deadline(s):`` around a ``yield`` runs in the consumer's context (a generator has no
context of its own). When the consumer stops iterating (``break``) the generator stays suspended inside the scope,
and the event loop's async-generator finalizer later closes it in a *task of its own*. There ``AsyncScope.exit``
called ``ContextVar.reset`` with tokens of another Context: ``ValueError`` ("was created in a different Context"),
reported by the loop as an unretrieved task exception. Worse, the consumer's context still named the abandoned scope
as the enforcer of its ambient deadline, so every later ``Timeout`` (or ``deadline``) of the task whose limit was
looser than that deadline returned early from ``enter_async_scope`` ("already enforced") and set **no timer at
all**: ``Timeout(30)`` around a hung call was not enforced, and neither was the deadline once it had passed.

Now a scope exited in another Context only cancels its timer (a cancelled timer marks it inactive, so it is never
trusted as the enforcer again) and the docs say to close such generators with ``contextlib.aclosing``. Peer
reports of the hazard: PEP 789 ("Preventing task-cancellation bugs by limiting yield in async generators") and
trio's ban on yielding inside cancel scopes.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import stalwart as sw
from stalwart._clock import SYSTEM_CLOCK
from stalwart._deadline import ambient_enforced, enter_async_scope


async def numbers() -> AsyncIterator[int]:
    async with sw.deadline(30.0):  # long: its timer must never be what these tests observe
        yield 1
        yield 2


async def abandon_one() -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async for _ in numbers():
            break  # abandoned mid-scope: the event loop's finalizer closes it in a task of its own
        for _ in range(5):
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    return reported


async def test_closing_it_in_the_finalizer_task_reports_no_error() -> None:
    assert await abandon_one() == []


async def test_a_later_looser_timeout_sets_its_own_timer() -> None:
    await abandon_one()
    assert sw.current_deadline() is not None  # the consumer's context still shows the generator's deadline ...
    assert not ambient_enforced()  # ... but nothing enforces it any more
    scope = enter_async_scope(60.0, SYSTEM_CLOCK, fail_fast=True)
    assert scope is not None  # so a looser Timeout enforces it itself (it used to schedule nothing)
    assert not scope.own
    scope.exit(None)
    assert await sw.Timeout(60.0).run(asyncio.sleep, 0.0, "done") == "done"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_aclosing_keeps_the_scope_to_the_generator() -> None:
    async with aclosing(numbers()) as items:
        async for _ in items:
            break
    assert sw.current_deadline() is None
