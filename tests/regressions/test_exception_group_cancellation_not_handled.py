"""Regression: a cancellation or an interrupt inside an exception group was retried and swallowed.

What was wrong: the compiled ``on=`` predicates excluded ``CancelledError``, ``KeyboardInterrupt``, ``SystemExit``
and ``GeneratorExit`` only by ``isinstance``, so a ``BaseExceptionGroup`` carrying one of them (a task group or
anyio/trio code that wraps the cancellation together with other errors) matched ``on=BaseException`` or any
predicate: ``Fallback(value=..., on=BaseException)`` answered a Ctrl-C with its value, and ``Retry(on=lambda e:
True)`` ran the call again after it. DESIGN.md: these are never retried, never counted, never swallowed. Peer
reports: tenacity issue #529 / PR #630 ("Avoid retrying cancellation errors in retry_if_not_exception_type") and
anyio issue #634 (a ``CancelledError`` caught and re-raised inside an exception group is no longer recognised as a
cancellation). Also: ``on=`` given a class that is not an exception (``on=int``) was accepted as a "predicate" and
failed only at the first error.
"""

from __future__ import annotations

import asyncio

import pytest

import stalwart as sw
from stalwart._types import compile_exception_spec, is_never_handled
from stalwart.testing import FakeClock

GROUPS = [
    BaseExceptionGroup("interrupted", [KeyboardInterrupt()]),
    BaseExceptionGroup("cancelled", [asyncio.CancelledError(), ValueError("boom")]),
    BaseExceptionGroup("outer", [ValueError("x"), BaseExceptionGroup("inner", [SystemExit(1)])]),
]


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_a_group_holding_a_never_handled_exception_is_never_handled(group: BaseExceptionGroup[BaseException]) -> None:
    assert is_never_handled(group)
    for spec in (BaseException, (BaseExceptionGroup,), lambda exc: True):
        assert not compile_exception_spec(spec, parameter="on")(group)  # type: ignore[arg-type]


def test_ordinary_groups_still_match() -> None:
    group = ExceptionGroup("errors", [ValueError("a"), OSError("b")])
    assert not is_never_handled(group)
    assert compile_exception_spec(Exception, parameter="on")(group)
    assert compile_exception_spec(lambda exc: True, parameter="on")(group)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_fallback_does_not_swallow_it(group: BaseExceptionGroup[BaseException]) -> None:
    def interrupted() -> None:
        raise group

    with pytest.raises(BaseExceptionGroup) as info:
        sw.Fallback(value="swallowed", on=BaseException).call(interrupted)
    assert info.value is group


@pytest.mark.parametrize("group", GROUPS, ids=str)
async def test_retry_does_not_run_the_call_again(group: BaseExceptionGroup[BaseException]) -> None:
    calls = []

    async def interrupted() -> None:
        calls.append(1)
        raise group

    clock = FakeClock()
    with pytest.raises(BaseExceptionGroup):
        await sw.Retry(on=lambda exc: True, clock=clock).run(interrupted)
    with pytest.raises(BaseExceptionGroup):
        await sw.Retry(on=BaseException, clock=clock).run(interrupted)
    assert calls == [1, 1]
    assert clock.sleeps == []


@pytest.mark.parametrize("spec", [int, str, object])
def test_a_class_that_is_not_an_exception_is_refused(spec: type) -> None:
    with pytest.raises(TypeError, match="on"):
        sw.Retry(on=spec)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on"):
        sw.Fallback(value=1, on=spec)  # type: ignore[arg-type]
