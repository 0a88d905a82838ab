"""Regression: a classifying predicate that raised kept the call's permit for good.

What was wrong: ``CircuitBreaker`` classified an exception with its ``exclude`` and ``on`` predicates before handing
the permit back (``release``) or recording an outcome, with nothing around them. A predicate that raised (a bug in
user code, an attribute missing on an unexpected exception) escaped with neither done: in HALF_OPEN the probe's
permit was never returned, so once ``half_open_max_calls`` such calls had happened the breaker refused every call
and stayed HALF_OPEN for good (without ``max_half_open_wait``); with slow calls tracked, the CLOSED call's in-flight
ticket stayed in the breaker and, once ``slow_call_duration`` had passed, counted as a slow call running forever.
Every entry point shared the bug: ``call``, ``run`` and both decorator wrappers.

Peer reports: resilience4j issue #2324 ("If ``ignoreThrowablePredicate`` throws it can lead to a spin": the permit
is neither released nor recorded) fixed by resilience4j PR #2488 ("Prevent permit leak when a CircuitBreaker
record/ignore predicate throws") and PR #2332 for the Kotlin wrapper, whose maintainer's rule we follow: never
swallow, rethrow the predicate's exception. Polly issue #1979 is the same wedge from an unhandled probe exception.

The rule now (``CircuitBreaker`` docstring): a predicate (``on``, ``exclude``, ``on_result``) that raises gives the
call no outcome: its permit is handed back, and the predicate's exception propagates, chained to the call's own
exception (``__context__``) when there was one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Boom(Exception):
    pass


class PredicateBug(Exception):
    pass


class Flaky:
    """A predicate that raises while armed, else answers ``answer``."""

    def __init__(self, answer: bool) -> None:
        self.armed = True
        self.answer = answer

    def __call__(self, value: object) -> bool:
        if self.armed:
            raise PredicateBug("predicate bug")
        return self.answer


def fail() -> str:
    raise Boom


def ok() -> str:
    return "ok"


ENTRIES = ["call", "decorated sync", "run", "decorated async"]


async def through(breaker: sw.CircuitBreaker, entry: str, fn: Callable[[], str]) -> str:
    if entry == "call":
        return breaker.call(fn)
    if entry == "decorated sync":
        return breaker(fn)()

    async def afn() -> str:
        return fn()

    if entry == "run":
        return await breaker.run(afn)
    decorated: Callable[[], Awaitable[str]] = breaker(afn)
    return await decorated()


# (parameter, the predicate's answer once fixed, the call's behaviour)
PREDICATES: list[tuple[str, bool, Callable[[], str]]] = [
    ("on", True, fail),
    ("exclude", False, fail),
    ("on_result", False, ok),
]
MODELS: dict[str, dict[str, Any]] = {
    "consecutive": {},
    "count window": {"window": sw.CountWindow(10), "minimum_calls": 10},
}


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(("parameter", "answer", "behaviour"), PREDICATES, ids=[p[0] for p in PREDICATES])
@pytest.mark.parametrize("model", MODELS)
async def test_a_raising_predicate_hands_the_probe_back(
    entry: str, parameter: str, answer: bool, behaviour: Callable[[], str], model: str
) -> None:
    clock = FakeClock(start=100.0)
    predicate = Flaky(answer)
    breaker = sw.CircuitBreaker(
        "dep",
        clock=clock,
        half_open_max_calls=1,
        success_threshold=1,
        **{parameter: predicate},
        **MODELS[model],
    )
    breaker.transition_to(sw.CircuitState.HALF_OPEN)

    with pytest.raises(PredicateBug) as info:
        await through(breaker, entry, behaviour)
    if behaviour is fail:  # chained to the call's own exception
        assert isinstance(info.value.__context__, Boom)

    stats = breaker.statistics()
    assert stats.state is sw.CircuitState.HALF_OPEN
    assert stats.half_open_probes == 0  # the probe's permit is back
    assert stats.calls == 0  # and the call has no outcome

    predicate.armed = False  # the next probe is admitted and decides
    assert await through(breaker, entry, ok) == "ok"
    assert breaker.state is sw.CircuitState.CLOSED


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(("parameter", "answer", "behaviour"), PREDICATES, ids=[p[0] for p in PREDICATES])
async def test_a_raising_predicate_ends_the_in_flight_call(
    entry: str, parameter: str, answer: bool, behaviour: Callable[[], str]
) -> None:
    """With slow calls tracked, a CLOSED call holds an in-flight ticket: a leaked one became a slow call forever."""
    clock = FakeClock(start=100.0)
    breaker = sw.CircuitBreaker(
        "dep",
        clock=clock,
        window=sw.CountWindow(4),
        minimum_calls=4,
        slow_call_duration=1.0,
        slow_call_rate_threshold=25.0,
        **{parameter: Flaky(answer)},
    )
    with pytest.raises(PredicateBug):
        await through(breaker, entry, behaviour)
    for _ in range(3):
        breaker.record_success(breaker.acquire())

    clock.advance(5.0)  # a call still running now would be overdue, hence slow (25 % of 4 calls: open)
    breaker.release(breaker.acquire())  # admitting a call is when running calls are found overdue
    stats = breaker.statistics()
    assert stats.slow_call_count == 0
    assert stats.state is sw.CircuitState.CLOSED
