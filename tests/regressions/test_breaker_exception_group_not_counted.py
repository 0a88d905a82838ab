"""Regression: the circuit breaker counted an exception group carrying a cancellation or an interrupt.

What was wrong: ``CircuitBreaker`` set aside the outcomes that never count (``CancelledError``,
``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``, and local ``Rejected`` errors) with a plain
``isinstance`` test, so a ``BaseExceptionGroup`` holding one of them (a task group cancelled along with a failing
child, anyio/trio code wrapping a Ctrl-C) went on to the ``on`` rules. Those reject such a group (see
``test_exception_group_cancellation_not_handled.py``), and an exception ``on`` does not match counts as a *success*
(the dependency answered): a cancelled probe closed a HALF_OPEN breaker, a cancelled call reset the consecutive
failure count in CLOSED, and in a rate window cancellations diluted the failure rate. A group made only of local
rejections (every child refused by an inner bulkhead) counted as a failure of the dependency.

DESIGN.md: cancellation and interpreter exit are never counted as failures (nor as successes); nor are local
rejections. Peer reports on the same confusion: Polly issue #311 (a ``TaskCanceledException`` used up the half-open
trial), anyio issue #634 (a ``CancelledError`` inside a group no longer recognised as a cancellation), and the
gobreaker PR #107 (an ``Excluded`` outcome for context cancellation, neither success nor failure).

Now such a group hands its permit back with no outcome, exactly as the bare exception does.
"""

from __future__ import annotations

import asyncio

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Boom(Exception):
    pass


GROUPS = [
    pytest.param(lambda: BaseExceptionGroup("cancelled", [asyncio.CancelledError(), Boom()]), id="cancelled"),
    pytest.param(lambda: BaseExceptionGroup("interrupted", [KeyboardInterrupt()]), id="interrupted"),
    pytest.param(
        lambda: BaseExceptionGroup("outer", [Boom(), BaseExceptionGroup("inner", [SystemExit(1)])]),
        id="nested exit",
    ),
    pytest.param(lambda: ExceptionGroup("refused", [sw.BulkheadFullError("inner", 1, 0)]), id="rejected only"),
]
SPECS = [
    pytest.param(Exception, id="on=Exception"),
    pytest.param(BaseException, id="on=BaseException"),
    pytest.param(lambda exc: True, id="on=predicate"),
]


def raiser(make: object) -> object:
    def call() -> None:
        raise make()  # type: ignore[operator]

    return call


@pytest.mark.parametrize("make", GROUPS)
@pytest.mark.parametrize("on", SPECS)
def test_a_group_does_not_close_a_half_open_breaker(make: object, on: object) -> None:
    breaker = sw.CircuitBreaker("dep", clock=FakeClock(), on=on, half_open_max_calls=1, success_threshold=1)  # type: ignore[arg-type]
    breaker.transition_to(sw.CircuitState.HALF_OPEN)
    with pytest.raises(BaseExceptionGroup):
        breaker.call(raiser(make))  # type: ignore[arg-type]
    stats = breaker.statistics()
    assert stats.state is sw.CircuitState.HALF_OPEN  # neither closed (success) nor re-opened (failure)
    assert stats.half_open_probes == 0  # and the probe's permit is back
    assert stats.calls == 0


@pytest.mark.parametrize("make", GROUPS)
async def test_a_group_does_not_reset_the_consecutive_failures(make: object) -> None:
    breaker = sw.CircuitBreaker("dep", clock=FakeClock(), failure_threshold=3)

    async def boom() -> None:
        raise Boom

    async def group() -> None:
        raise make()  # type: ignore[operator]

    for fn in (boom, boom, group, boom):
        with pytest.raises((Boom, BaseExceptionGroup)):
            await breaker.run(fn)
    assert breaker.state is sw.CircuitState.OPEN  # three failures in a row: the group was no success between them


@pytest.mark.parametrize("make", GROUPS)
def test_a_group_does_not_dilute_a_failure_rate(make: object) -> None:
    breaker = sw.CircuitBreaker("dep", clock=FakeClock(), window=sw.CountWindow(4), minimum_calls=4)

    @breaker
    def boom() -> None:
        raise Boom

    @breaker
    def group() -> None:
        raise make()  # type: ignore[operator]

    for fn in (boom, group, group, group):
        with pytest.raises((Boom, BaseExceptionGroup)):
            fn()
    stats = breaker.statistics()
    assert (stats.calls, stats.failure_count) == (1, 1)


def test_is_failure_agrees() -> None:
    breaker = sw.CircuitBreaker("dep", clock=FakeClock())
    assert not breaker.is_failure(ExceptionGroup("refused", [sw.BulkheadFullError("inner", 1, 0)]))
    assert not breaker.is_failure(BaseExceptionGroup("cancelled", [asyncio.CancelledError(), Boom()]))
    assert breaker.is_failure(ExceptionGroup("mixed", [sw.BulkheadFullError("inner", 1, 0), Boom()]))
