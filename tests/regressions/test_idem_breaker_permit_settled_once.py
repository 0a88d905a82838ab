"""Regression: the idempotency middleware settled a breaker permit twice, or skipped giving back a claim, when the
breaker's own bookkeeping raised while settling it.

What was wrong: ``IdempotencyMiddleware._claim`` recorded the claim's success inside the ``try`` whose
``except BaseException`` handed the permit back with ``release``. The breaker settles a permit before anything that
may raise (docs/internals.md, breaker section: exactly one of ``record_success``, ``record_failure``, ``release`` per
permit, and only one even when it raises), so an event hook raising a ``BaseException`` after the success was
recorded, or the breaker's clock failing while recording it (the breaker then hands the permit back itself),
settled the permit a second time: in HALF_OPEN that freed a probe slot still in use, and the breaker admitted more
than ``half_open_max_calls`` probes. The request then escaped with the key left IN_PROGRESS (claimed, never run,
never given back) until its lease expired. When settling a failure (the store did not answer) or a cancellation
raised, the ambiguous-claim cleanup that followed it was skipped, so a claim the store had applied stayed out too.

Now the claim runs in a ``try`` that settles only its failures, the success is recorded after it, and a claim that
will not run is given back before the permit is settled. These tests inject the fault at each settling call (an
event hook raising a ``BaseException`` subclass, a failing breaker clock) in HALF_OPEN, with and without another
probe held, and check afterwards that no permit is out (``statistics()``: every admitted probe has an outcome or is
held by the test), that HALF_OPEN admits exactly ``half_open_max_calls`` probes, and that the claim was given back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from _idem_asgi import CountingApp, post, wrap

from stalwart import CircuitBreaker, CircuitOpenError, CircuitState, StoreUnavailable, add_hook, remove_hook
from stalwart.idempotency import IdempotencyMiddleware, MemoryStore
from stalwart.testing import FakeClock

RESET = 30.0
MAX_PROBES = 2


class HookAbort(BaseException):
    """A ``BaseException`` raised by an event hook (``emit`` stops only ``Exception``)."""


class ClockFailed(Exception):
    """The breaker's clock failing."""


class Trap:
    """Raises ``kind`` once at the next fault point after being armed."""

    def __init__(self, kind: type[BaseException]) -> None:
        self.kind = kind
        self.armed = False
        self.fired = False

    def point(self) -> None:
        if self.armed:
            self.armed = False
            self.fired = True
            raise self.kind("injected")


class TrappedClock(FakeClock):
    def __init__(self, trap: Trap | None) -> None:
        super().__init__(start=100.0)
        self.trap = trap

    def monotonic(self) -> float:
        if self.trap is not None:
            self.trap.point()
        return super().monotonic()


class Store(MemoryStore):
    """Applies the claim, then answers, fails (``StoreUnavailable``) or hangs; arms the trap just before that."""

    def __init__(self, ending: str, trap: Trap) -> None:
        super().__init__()
        self.ending = ending
        self.trap = trap
        self.entered = asyncio.Event()

    async def claim(self, record_id: str, **kwargs: Any) -> Any:
        result = await super().claim(record_id, **kwargs)
        if self.ending == "cancelled":
            self.entered.set()  # the test arms the trap, then cancels
            await asyncio.Event().wait()
        self.trap.armed = True
        if self.ending == "unavailable":
            raise StoreUnavailable("the answer was lost")
        return result


async def request(mw: IdempotencyMiddleware) -> None:
    await post(mw)


@pytest.fixture
def hook_trap() -> Iterator[Trap]:
    trap = Trap(HookAbort)

    def hook(event: object) -> None:
        trap.point()

    add_hook(hook)
    try:
        yield trap
    finally:
        remove_hook(hook)


def half_open_breaker(clock: FakeClock) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "idempotency-store",
        failure_threshold=1,
        reset_timeout=RESET,
        half_open_max_calls=MAX_PROBES,
        success_threshold=MAX_PROBES,  # a probe success alone does not close it
        clock=clock,
    )
    permit = breaker.acquire()
    breaker.record_failure(permit)  # CLOSED -> OPEN
    clock.advance(RESET + 1)  # the next acquire moves it to HALF_OPEN
    return breaker


def admissions(breaker: CircuitBreaker, clock: FakeClock) -> int:
    """How many probes the breaker admits now (taking them; handed back afterwards)."""
    taken = []
    try:
        for _ in range(MAX_PROBES + 3):
            try:
                taken.append(breaker.acquire())
            except CircuitOpenError:
                break
        return len(taken)
    finally:
        for permit in taken:
            breaker.release(permit)


def check_no_permit_out(breaker: CircuitBreaker, clock: FakeClock, held: list[int]) -> None:
    stats = breaker.statistics()
    if stats.state is CircuitState.HALF_OPEN:
        # Every probe admitted has an outcome, or is one the test still holds.
        assert stats.half_open_probes == stats.calls + len(held)
        assert admissions(breaker, clock) == MAX_PROBES - stats.half_open_probes
    else:
        assert stats.state is CircuitState.OPEN  # a failed probe re-opened it
        assert not held
        clock.advance(RESET + 1)
        assert admissions(breaker, clock) == MAX_PROBES


async def run_request(mw: IdempotencyMiddleware, store: Store, ending: str, trap: Trap) -> None:
    if ending != "cancelled":
        await request(mw)
        return
    task = asyncio.ensure_future(request(mw))
    await store.entered.wait()
    trap.armed = True
    task.cancel()
    await task


async def settle_background() -> None:
    for _ in range(50):  # the ambiguous-claim cleanup is a background task of a few store calls (no real I/O)
        await asyncio.sleep(0)


# (how the claim ends, what raises while its permit is settled, whether the test holds another probe meanwhile)
CASES = [
    ("success", "hook", False),
    ("success", "hook", True),
    ("success", "clock", False),
    ("success", "clock", True),
    ("unavailable", "hook", False),  # a failed probe re-opens the breaker: a held probe would be stale
    ("unavailable", "clock", False),
    ("cancelled", "hook", False),  # release reads no clock: only a hook can raise there
    ("cancelled", "hook", True),
]


@pytest.mark.parametrize(("ending", "fault", "held_probe"), CASES)
async def test_a_raising_settlement_settles_the_permit_once_and_gives_the_claim_back(
    ending: str, fault: str, held_probe: bool, hook_trap: Trap
) -> None:
    if fault == "hook":
        trap, clock = hook_trap, TrappedClock(None)
    else:
        trap = Trap(ClockFailed)
        clock = TrappedClock(trap)
    breaker = half_open_breaker(clock)
    held = [breaker.acquire()] if held_probe else []
    store = Store(ending, trap)
    app = CountingApp()
    mw = wrap(app, store, breaker=breaker, clock=FakeClock())

    with pytest.raises(trap.kind):
        await run_request(mw, store, ending, trap)
    assert trap.fired
    assert app.calls == 0
    await settle_background()

    check_no_permit_out(breaker, clock, held)
    assert len(store) == 0  # the claim that will not run was given back
    for permit in held:
        breaker.release(permit)


async def test_half_open_admits_exactly_max_probes_after_a_hook_raised_on_a_recorded_success(
    hook_trap: Trap,
) -> None:
    """The reviewer's case, step by step: one probe succeeds, a hook raises on its success event."""
    clock = FakeClock()
    breaker = half_open_breaker(clock)
    store = Store("success", hook_trap)
    mw = wrap(CountingApp(), store, breaker=breaker, clock=FakeClock())
    with pytest.raises(HookAbort):
        await request(mw)
    stats = breaker.statistics()
    assert stats.state is CircuitState.HALF_OPEN
    assert (stats.calls, stats.half_open_probes) == (1, 1)  # one probe, settled once with its success
    assert admissions(breaker, clock) == MAX_PROBES - 1
