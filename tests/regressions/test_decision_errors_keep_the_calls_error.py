"""Regression: an error raised while deciding whether to retry hid the error of the call that failed.

What was wrong: after a retryable failure, ``Retry`` decides outside the ``except`` block that caught the attempt's
exception (so that the next attempt's errors do not chain to this one). User code runs in that decision: a
``stop.when`` predicate, a custom retry budget's ``try_acquire_retry``, the injected clock and random source. When
it raised, its exception propagated with no ``__context__``: the traceback showed the predicate's bug and nothing
of the ``ConnectionError`` the dependency had raised, in all four forms (decorator, ``call``, ``run``, the block
form). An exception raised by an ``on`` predicate, which runs inside the ``except`` block, did carry the call's error
as its context (Python's "During handling of the above exception, another exception occurred"); tenacity users
report the same loss when a ``before_sleep`` or ``stop`` callback raises. Now the decision's error carries the
attempt's exception as its ``__context__`` in every form.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Down(ConnectionError):
    pass


def buggy_predicate(state: sw.StopState) -> bool:
    raise ZeroDivisionError("the stop predicate's own bug")


class BrokenBudget:
    name = "broken"

    def record_success(self, first: bool) -> None:
        pass

    def record_failure(self, first: bool) -> None:
        pass

    def try_acquire_retry(self) -> bool:
        raise ZeroDivisionError("the budget's own bug")


def retries() -> list[sw.Retry]:
    return [
        sw.Retry(on=Down, stop=sw.stop.when(buggy_predicate), clock=FakeClock()),
        sw.Retry(on=Down, budget=BrokenBudget(), clock=FakeClock()),
    ]


def failing() -> Callable[[], None]:
    def down() -> None:
        raise Down("connection refused")

    return down


async def failing_async() -> None:
    raise Down("connection refused")


@pytest.mark.parametrize("retry", retries(), ids=["stop.when", "budget"])
def test_call_and_decorator(retry: sw.Retry) -> None:
    for run in (lambda: retry.call(failing()), retry(failing())):
        with pytest.raises(ZeroDivisionError) as info:
            run()
        assert isinstance(info.value.__context__, Down)


@pytest.mark.parametrize("retry", retries(), ids=["stop.when", "budget"])
def test_run_and_async_decorator(retry: sw.Retry) -> None:
    for run in (lambda: retry.run(failing_async), retry(failing_async)):
        with pytest.raises(ZeroDivisionError) as info:
            asyncio.run(run())
        assert isinstance(info.value.__context__, Down)


@pytest.mark.parametrize("retry", retries(), ids=["stop.when", "budget"])
def test_block_form(retry: sw.Retry) -> None:
    with pytest.raises(ZeroDivisionError) as info:  # noqa: PT012
        for attempt in retry.attempts():
            with attempt:
                raise Down("connection refused")
    assert isinstance(info.value.__context__, Down)


def test_a_result_judged_retryable_has_no_error_to_keep() -> None:
    retry = sw.Retry(on=Down, on_result=lambda r: r is None, stop=sw.stop.when(buggy_predicate), clock=FakeClock())
    with pytest.raises(ZeroDivisionError) as info:
        retry.call(lambda: None)
    assert info.value.__context__ is None
