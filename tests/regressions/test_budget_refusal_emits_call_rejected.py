"""Regression: a retry the retry budget refused emitted no ``CallRejected(reason="budget")``.

DESIGN.md pins ``CallRejected(reason="circuit_open" | "bulkhead_full" | "budget")`` and docs/events.md counts
``rejections["budget"]`` in its example hook, but only the breaker and the bulkheads built ``CallRejected``: a
budget refusal emitted ``RetryBudgetExhausted`` alone, so a hook counting rejections by reason never saw one. Every
place a budget refuses a retry or a hedge now emits both (``Retry`` in its forms, ``Hedge``, the httpx transports).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Down(ConnectionError):
    pass


class SpentBudget:
    """A budget with nothing left: every retry is refused."""

    name = "spent"

    def record_success(self, first: bool) -> None:
        pass

    def record_failure(self, first: bool) -> None:
        pass

    def try_acquire_retry(self) -> bool:
        return False


@pytest.fixture
def events() -> Iterator[list[sw.Event]]:
    seen: list[sw.Event] = []
    sw.add_hook(seen.append)
    try:
        yield seen
    finally:
        sw.remove_hook(seen.append)


def _refusals(events: list[sw.Event]) -> list[Any]:
    return [
        (type(e).__name__, getattr(e, "reason", None))
        for e in events
        if isinstance(e, sw.CallRejected | sw.RetryBudgetExhausted)
    ]


def test_retry_call(events: list[sw.Event]) -> None:
    retry = sw.Retry(on=Down, budget=SpentBudget(), clock=FakeClock())

    def down() -> None:
        raise Down

    with pytest.raises(Down):
        retry.call(down)
    assert _refusals(events) == [("RetryBudgetExhausted", None), ("CallRejected", "budget")]
    rejected = [e for e in events if isinstance(e, sw.CallRejected)]
    assert rejected == [sw.CallRejected("spent", "budget")]


def test_retry_async_decorator(events: list[sw.Event]) -> None:
    @sw.Retry(on=Down, budget=SpentBudget(), clock=FakeClock())
    async def down() -> None:
        raise Down

    with pytest.raises(Down):
        asyncio.run(down())
    assert _refusals(events) == [("RetryBudgetExhausted", None), ("CallRejected", "budget")]


def _block_form() -> None:
    for attempt in sw.Retry(on=Down, budget=SpentBudget(), clock=FakeClock()).attempts():
        with attempt:
            raise Down


def test_retry_block_form(events: list[sw.Event]) -> None:
    with pytest.raises(Down):
        _block_form()
    assert _refusals(events) == [("RetryBudgetExhausted", None), ("CallRejected", "budget")]


def test_hedge(events: list[sw.Event]) -> None:
    async def down() -> None:
        raise Down

    hedge = sw.Hedge(10.0, on=Down, budget=SpentBudget())
    with pytest.raises(Down):
        asyncio.run(hedge.run(down))
    assert _refusals(events) == [("RetryBudgetExhausted", None), ("CallRejected", "budget")]
