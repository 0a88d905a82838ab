"""Regression: an error raised while judging a hedged attempt hid the attempt's own error.

``Hedge`` judges a finished attempt from its task (``task.exception()``), outside any ``except`` block. User code
runs in that judgement: the ``on`` predicate, the ``on_result`` predicate, the retry budget's ``record_failure`` and
``try_acquire_retry`` (before the next attempt starts). When it raised, its exception propagated with no
``__context__``, so the ``ConnectionError`` the dependency had raised was lost from the traceback: the same fault
``Retry`` had (test_decision_errors_keep_the_calls_error.py). Now the judgement's error carries the attempt's
exception as its ``__context__``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import stalwart as sw


class Down(ConnectionError):
    pass


class BrokenBudget:
    name = "broken"

    def __init__(self, where: str) -> None:
        self.where = where

    def record_success(self, first: bool) -> None:
        pass

    def record_failure(self, first: bool) -> None:
        if self.where == "record_failure":
            raise ZeroDivisionError("the budget's own bug")

    def try_acquire_retry(self) -> bool:
        if self.where == "try_acquire_retry":
            raise ZeroDivisionError("the budget's own bug")
        return True


def buggy_on(exc: BaseException) -> bool:
    raise ZeroDivisionError("the on predicate's own bug")


async def down() -> None:
    raise Down("connection refused")


def hedges() -> list[sw.Hedge]:
    return [
        sw.Hedge(10.0, on=buggy_on),
        sw.Hedge(10.0, on=Down, budget=BrokenBudget("record_failure")),
        sw.Hedge(10.0, on=Down, budget=BrokenBudget("try_acquire_retry")),
    ]


@pytest.mark.parametrize("hedge", hedges(), ids=["on predicate", "record_failure", "try_acquire_retry"])
def test_the_attempts_error_is_the_context(hedge: sw.Hedge) -> None:
    async def main() -> Any:
        return await hedge.run(down)

    with pytest.raises(ZeroDivisionError) as info:
        asyncio.run(main())
    assert isinstance(info.value.__context__, Down)


def test_on_result_predicate_error_is_raised_unchanged() -> None:
    """A result has no exception to attach: the predicate's error propagates as it is."""

    def buggy_on_result(result: object) -> bool:
        raise ZeroDivisionError("the on_result predicate's own bug")

    async def ok() -> str:
        return "ok"

    hedge = sw.Hedge(10.0, on=Down, on_result=buggy_on_result)

    async def main() -> Any:
        return await hedge.run(ok)

    with pytest.raises(ZeroDivisionError) as info:
        asyncio.run(main())
    assert info.value.__context__ is None


def test_the_attempts_own_error_is_raised_unchanged() -> None:
    """An error ``on`` does not cover is the answer: raised as it is, with no context added."""

    async def boom() -> None:
        raise KeyError("the answer")

    hedge = sw.Hedge(10.0, on=Down)

    async def main() -> Any:
        return await hedge.run(boom)

    with pytest.raises(KeyError) as info:
        asyncio.run(main())
    assert info.value.__context__ is None
