"""Regression: a permit or a half-open probe slot leaked when the breaker's own bookkeeping raised.

What was wrong: between taking a permit and handing it back (or recording an outcome under it) the breaker runs
code that can raise: it reads the clock (the call's start, its end, the time of the outcome), logs and emits the
transitions it makes (event hooks may raise a ``BaseException``: ``emit`` stops only ``Exception``), and calls the
``on``/``exclude``/``on_result`` predicates. An exception at several of those points escaped with the permit still
out:

* a hook raising ``KeyboardInterrupt`` on the OPEN → HALF_OPEN transition made by the first probe's ``acquire``
  (the permit was taken, never returned to the caller);
* a clock read failing after the permit was taken (the start of a timed call) or before the outcome was recorded
  (the end of the call, the time of the outcome);
* a classifying predicate raising (``test_breaker_predicate_raises.py``).

In HALF_OPEN each lost permit is a probe slot gone for the whole period: once ``half_open_max_calls`` were lost the
breaker refused everything and never left HALF_OPEN (resilience4j issue #2324 and its stuck-half-open reports
#903/#935; Polly issue #1979). With slow calls tracked, a CLOSED call's lost in-flight ticket counted as a slow call
running forever and could open the breaker by itself.

The rule now: whatever raises between ``acquire`` and the outcome, the permit is handed back (without an outcome
when none was recorded) and the exception propagates. These tests inject an exception at every such point in turn
(every clock read, hook call and predicate call of one call: a table over the position), for every entry point
(``call``, ``run``, the sync and async decorator wrappers), for calls that succeed, fail, are interrupted
(``KeyboardInterrupt``), raise an exception group holding a cancellation, are cancelled or are closed while
suspended (``GeneratorExit``, as an abandoned coroutine or async generator is), with a ``BaseException`` and an
ordinary exception; a Hypothesis property runs random sequences of such calls. After every call no permit is out
(``statistics()``: every HALF_OPEN probe has an outcome; no ended call is counted as running), and once the faults
stop the breaker always gets back to CLOSED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stalwart as sw
from stalwart._events import add_hook, remove_hook
from stalwart.testing import FakeClock

RESET = 10.0
SLOW = 1.0


class Boom(Exception):
    """The protected call's own failure."""


class Injected(Exception):
    """An ordinary exception injected into the breaker's bookkeeping."""


class InjectedInterrupt(KeyboardInterrupt):
    """A ``BaseException`` injected into the breaker's bookkeeping (hooks may raise these through ``emit``)."""


class Faults:
    """Counts the points where the breaker's bookkeeping may raise, and raises at the ``at``-th one once armed."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.seen = 0
        self.fired = False
        self.kind: type[BaseException] = Injected

    def arm(self, at: int, kind: type[BaseException]) -> None:
        self.at, self.seen, self.fired, self.kind = at, 0, False, kind

    def disarm(self) -> None:
        self.at = None

    def point(self) -> None:
        if self.at is None:
            return
        self.seen += 1
        if self.seen == self.at:
            self.fired = True
            raise self.kind(f"injected at point {self.at}")


class FaultyClock(FakeClock):
    def __init__(self, faults: Faults) -> None:
        super().__init__(start=100.0)
        self.faults = faults

    def monotonic(self) -> float:
        self.faults.point()
        return super().monotonic()


MODELS: dict[str, dict[str, Any]] = {
    "consecutive": {"failure_threshold": 2},
    "count window": {"window": sw.CountWindow(4), "minimum_calls": 2},
    "slow calls tracked": {"window": sw.CountWindow(4), "minimum_calls": 2, "slow_call_duration": SLOW},
}


def make(model: str, faults: Faults) -> tuple[sw.CircuitBreaker, FaultyClock]:
    def on(exc: BaseException) -> bool:
        faults.point()
        return isinstance(exc, Exception)

    def exclude(exc: BaseException) -> bool:
        faults.point()
        return False

    def on_result(result: object) -> bool:
        faults.point()
        return False

    clock = FaultyClock(faults)
    breaker = sw.CircuitBreaker(
        "dep",
        clock=clock,
        reset_timeout=RESET,
        half_open_max_calls=2,
        success_threshold=2,  # a single lost probe slot leaves too few to close
        on=on,
        exclude=exclude,
        on_result=on_result,
        **MODELS[model],
    )
    return breaker, clock


@pytest.fixture
def faults() -> Iterator[Faults]:
    faults = Faults()

    def hook(event: object) -> None:
        faults.point()

    add_hook(hook)
    yield faults
    remove_hook(hook)


# --- one call, through any entry point, ending in any way ------------------------------------------------------------


def _behave(behaviour: str) -> str:
    if behaviour == "ok":
        return "ok"
    if behaviour == "fail":
        raise Boom
    if behaviour == "interrupt":
        raise KeyboardInterrupt
    if behaviour == "cancelled group":
        raise BaseExceptionGroup("task group", [asyncio.CancelledError(), Boom()])
    raise AssertionError(behaviour)


class _Suspend:
    """Suspends the coroutine once, like an await on I/O, with no event loop needed."""

    def __await__(self) -> Generator[None, None, None]:
        yield


def _drive(coro: Coroutine[Any, Any, Any], ending: str) -> None:
    """Run ``coro`` up to its suspension, then resume it, close it (``GeneratorExit``) or cancel it."""
    try:
        coro.send(None)
    except StopIteration:
        return
    if ending == "close":  # what the garbage collector or an async generator's aclose() does
        coro.close()
    elif ending == "cancel":
        coro.throw(asyncio.CancelledError())
    else:
        try:
            coro.send(None)
        except StopIteration:
            return
    raise AssertionError("the coroutine should have ended")  # pragma: no cover


ENTRIES = ["call", "decorated sync", "run", "decorated async"]
SYNC_ENDINGS = ["ok", "fail", "interrupt", "cancelled group"]
ASYNC_ENDINGS = [*SYNC_ENDINGS, "close", "cancel"]


def perform(breaker: sw.CircuitBreaker, entry: str, ending: str) -> None:
    """One call; every exception it raises is left to the caller."""
    if entry == "call":
        breaker.call(_behave, ending)
        return
    if entry == "decorated sync":
        breaker(_behave)(ending)
        return

    async def body() -> str:
        await _Suspend()
        return _behave(ending)

    decorated: Callable[[], Coroutine[Any, Any, str]] = breaker(body)
    _drive(breaker.run(body) if entry == "run" else decorated(), ending)


def endings(entry: str) -> list[str]:
    return ASYNC_ENDINGS if entry in ("run", "decorated async") else SYNC_ENDINGS


# --- what must hold ---------------------------------------------------------------------------------------------------


def permits_out(breaker: sw.CircuitBreaker, clock: FakeClock, model: str) -> int:
    """Permits taken and not handed back, as ``statistics()`` shows them (the calls are sequential: none runs)."""
    stats = breaker.statistics()
    if stats.state is sw.CircuitState.HALF_OPEN:
        return stats.half_open_probes - stats.calls  # every probe taken has an outcome, or was handed back
    if stats.state is sw.CircuitState.CLOSED and model == "slow calls tracked":
        clock.advance(SLOW)  # a call still "running" now is overdue, counted as a slow call
        try:
            breaker.release(breaker.acquire())  # admitting a call is when running calls are found overdue
        except sw.CircuitOpenError:
            return 1  # the overdue calls alone opened the breaker
        return breaker.statistics().slow_call_count  # the calls here take no time: never slow themselves
    return 0


def closes_eventually(breaker: sw.CircuitBreaker, clock: FakeClock) -> bool:
    for _ in range(4):
        if breaker.state is sw.CircuitState.CLOSED:
            return True
        clock.advance(RESET)
        try:
            breaker.call(_behave, "ok")
        except sw.CircuitOpenError:
            pass
    return breaker.state is sw.CircuitState.CLOSED


def to_first_probe(breaker: sw.CircuitBreaker, clock: FakeClock) -> None:
    """OPEN with the open period over: the next call moves the breaker to HALF_OPEN (and publishes it)."""
    breaker.transition_to(sw.CircuitState.OPEN)
    clock.advance(RESET)


# --- a table over every point of one call ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [InjectedInterrupt, Injected], ids=["BaseException", "Exception"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("start", ["first probe", "half open", "closed"])
def test_an_exception_at_any_point_of_a_call_leaks_nothing(
    faults: Faults, kind: type[BaseException], model: str, entry: str, start: str
) -> None:
    points = 0
    for ending in endings(entry):
        at = 1
        while True:
            breaker, clock = make(model, faults)
            if start == "first probe":
                to_first_probe(breaker, clock)
            elif start == "half open":
                breaker.transition_to(sw.CircuitState.HALF_OPEN)
            faults.arm(at, kind)
            raised: BaseException | None = None
            try:
                perform(breaker, entry, ending)
            except BaseException as exc:  # whatever escapes, the breaker must be sound
                raised = exc
            finally:
                faults.disarm()
            where = f"{ending}: exception at point {at}"
            if ending not in ("ok", "close"):
                assert raised is not None, f"{where}: the call's exception was swallowed"
            assert permits_out(breaker, clock, model) == 0, f"{where}: a permit is out"
            assert closes_eventually(breaker, clock), f"{where}: the breaker never closes again"
            if not faults.fired:
                break  # every point of this call has had its exception
            points += 1
            at += 1
            assert at < 50
    assert points >= 3 * len(endings(entry))  # the table did reach the breaker's bookkeeping


def test_a_hook_interrupting_the_first_probe_hands_its_permit_back() -> None:
    """The shortest reproduction: the OPEN → HALF_OPEN transition is published after the permit is taken."""
    clock = FakeClock(start=100.0)
    breaker = sw.CircuitBreaker("dep", clock=clock, reset_timeout=RESET, half_open_max_calls=1, success_threshold=1)

    def hook(event: object) -> None:
        if isinstance(event, sw.CircuitStateChanged) and event.to_state == "half_open":
            raise KeyboardInterrupt

    to_first_probe(breaker, clock)
    add_hook(hook)
    try:
        with pytest.raises(KeyboardInterrupt):
            breaker.call(_behave, "ok")
    finally:
        remove_hook(hook)
    assert breaker.statistics().half_open_probes == 0
    assert breaker.call(_behave, "ok") == "ok"
    assert breaker.state is sw.CircuitState.CLOSED


# --- random sequences ---------------------------------------------------------------------------------------------

STEP = st.tuples(
    st.sampled_from(ENTRIES),
    st.sampled_from(ASYNC_ENDINGS),
    st.one_of(st.none(), st.integers(min_value=1, max_value=12)),  # where the exception goes, if anywhere
    st.sampled_from([InjectedInterrupt, Injected, GeneratorExit]),
    st.sampled_from([0.0, SLOW, RESET]),  # time passing before the call
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(list(MODELS)), steps=st.lists(STEP, max_size=12))
def test_random_calls_with_random_faults_never_leak(
    faults: Faults, model: str, steps: list[tuple[str, str, int | None, type[BaseException], float]]
) -> None:
    breaker, clock = make(model, faults)
    for entry, ending, at, kind, pause in steps:
        if ending not in endings(entry):
            ending = "fail"
        clock.advance(pause)
        if at is not None:
            faults.arm(at, kind)
        try:
            perform(breaker, entry, ending)
        except BaseException:  # whatever escapes, the breaker must be sound
            pass
        finally:
            faults.disarm()
        assert permits_out(breaker, clock, model) == 0
    assert closes_eventually(breaker, clock)
