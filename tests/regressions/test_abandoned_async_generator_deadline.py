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
from typing import Any

import pytest

import stalwart as sw


async def numbers() -> AsyncIterator[int]:
    async with sw.deadline(0.05):
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


async def test_a_later_looser_timeout_is_still_enforced() -> None:
    await abandon_one()
    with pytest.raises(sw.DeadlineExceeded):
        await sw.Timeout(30.0).run(asyncio.sleep, 2.0)  # bounded by the deadline the generator left behind
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_aclosing_keeps_the_scope_to_the_generator() -> None:
    from contextlib import aclosing

    async with aclosing(numbers()) as items:
        async for _ in items:
            break
    assert sw.current_deadline() is None
