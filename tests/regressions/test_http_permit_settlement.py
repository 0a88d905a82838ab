"""Regression: the httpx transports leaked a breaker permit and a bulkhead slot when their own bookkeeping raised.

What was wrong: between ``breaker.acquire()`` and the ``try`` around the inner transport the drivers ran code that
can raise (the attempt header's stamping, a clock read for the attempt's start, the watchdog's setup,
``ambient_enforced()``, ``asyncio.timeout()``), and after the call they unstamped the headers, withdrew the
watchdog, released the bulkhead and read the clock (``record_*(permit, monotonic() - began)``) before settling the
permit. An exception at any of those points (a failing clock, an event hook raising a ``BaseException``, a
cancellation) escaped with the permit still out (in HALF_OPEN a probe slot lost for the whole period: the breaker
stuck there), often with the bulkhead slot too (the origin's concurrency shrinking for good), the attempt header
left on the caller's request and, in the async transport, the task still watched by the per-attempt watchdog.

The rule now (the breaker permit contract, docs/internals.md): once acquired, a permit is settled exactly once
(``record_success``/``record_failure``/``release``, never again once one has been called, even if it raised) and
the bulkhead slot released exactly once, whatever raises. These tests inject an exception at every clock read
(breaker's and transport's: they share the clock), at every event hook call (a ``BaseException`` subclass, which
``emit`` lets through) and a cancellation at every await of one request, for the sync transport, the async one and
the hedged path, over several upstream behaviours, with the breaker starting HALF_OPEN (where a lost permit shows)
or OPEN with its period over (the first probe's transition emits events); after each request no permit is out,
no bulkhead slot is held, the caller's request carries no attempt header and no task is left under watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stalwart._backoff import Backoff, Jitter
from stalwart._breaker import CircuitState
from stalwart._events import add_hook, remove_hook
from stalwart._hedge import Hedge
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"
ORIGIN = "http:https://api.example.com:443"
RESET = 10.0
MAX_POINTS = 200


class Injected(Exception):
    """An ordinary exception injected at a point."""


class InjectedBase(BaseException):
    """A ``BaseException`` injected at a point (not ``KeyboardInterrupt``: asyncio re-raises that out of the loop)."""


class Faults:
    """Counts the points of one kind (``clock``, ``hook`` or ``await``) and fails the ``at``-th one once armed."""

    def __init__(self) -> None:
        self.where = ""
        self.at: int | None = None
        self.seen = 0
        self.fired = False
        self.kind: type[BaseException] = Injected
        self.outer: asyncio.Task[Any] | None = None

    def arm(self, where: str, at: int, kind: type[BaseException]) -> None:
        self.where, self.at, self.seen, self.fired, self.kind = where, at, 0, False, kind

    def disarm(self) -> None:
        self.at = None

    def hit(self, where: str) -> bool:
        if self.at is None or where != self.where:
            return False
        self.seen += 1
        if self.seen == self.at:
            self.fired = True
            return True
        return False

    def point(self, where: str) -> None:
        if self.hit(where):
            raise self.kind(f"injected at {where} point {self.at}")

    async def pause(self) -> None:
        """An await of the request: a cancellation of the request's task may land here."""
        if self.hit("await"):
            assert self.outer is not None
            self.outer.cancel()
        await asyncio.sleep(0)


class FaultyClock(FakeClock):
    def __init__(self, faults: Faults) -> None:
        super().__init__(start=100.0)
        self.faults = faults

    def monotonic(self) -> float:
        self.faults.point("clock")
        return super().monotonic()

    async def asleep(self, seconds: float) -> None:
        await self.faults.pause()
        await super().asleep(seconds)


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body read through an await (where a cancellation may land)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def __iter__(self) -> Iterator[bytes]:
        yield b"ok"

    async def __aiter__(self) -> Any:
        await self.faults.pause()
        yield b"ok"


class Upstream(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers from a script (the last step repeats): a status, or an exception class to raise."""

    def __init__(self, steps: list[Any], faults: Faults) -> None:
        self.steps = steps
        self.faults = faults
        self.calls = 0

    def _next(self) -> httpx.Response:
        self.calls += 1
        step = self.steps[min(self.calls, len(self.steps)) - 1]
        if isinstance(step, type):
            raise step("scripted failure")
        return httpx.Response(step, stream=Body(self.faults))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._next()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.faults.pause()
        await self.faults.pause()  # two loop turns: long enough for a hedge to start
        return self._next()


SCRIPTS: dict[str, list[Any]] = {
    "ok": [200],
    "retried status": [503, 200],
    "transient error": [httpx.ConnectError, 200],
    "failure status": [500],
    "not transient": [ValueError],
}


class Setup:
    def __init__(self, flavour: str, script: str, start: str, faults: Faults) -> None:
        self.faults = faults
        self.clock = FaultyClock(faults)
        self.registry = Registry()
        self.upstream = Upstream(SCRIPTS[script], faults)
        config = ResilienceConfig(
            max_attempts=3,
            timeout=30.0,
            backoff=Backoff.exponential(initial=1.0, multiplier=2.0, max_delay=60.0, jitter=Jitter.NONE),
            reset_timeout=RESET,
            half_open_max_calls=2,
            success_threshold=2,  # a single lost probe slot leaves too few to close
            read_response=True,
            hedge=Hedge(delay=0.01, max_hedged=1) if flavour == "hedged" else None,
        )
        self.transport: ResilientTransport | AsyncResilientTransport
        if flavour == "sync":
            self.transport = ResilientTransport(self.upstream, config=config, registry=self.registry, clock=self.clock)
        else:
            self.transport = AsyncResilientTransport(
                self.upstream, config=config, registry=self.registry, clock=self.clock
            )
        origin = self.transport.origin(URL)
        assert origin.breaker is not None
        self.breaker = origin.breaker
        self.breaker.transition_to(CircuitState.OPEN)
        self.clock.advance(RESET)
        if start == "half open":
            self.breaker.transition_to(CircuitState.HALF_OPEN)
        self.request = httpx.Request("GET", URL)

    def check(self) -> None:
        stats = self.registry.get_bulkhead(ORIGIN).statistics()
        assert (stats.active, stats.queued) == (0, 0), "a bulkhead slot leaked"
        breaker = self.breaker.statistics()
        if breaker.state is CircuitState.HALF_OPEN:
            assert breaker.half_open_probes == breaker.calls, "a probe's permit leaked"
        assert "stalwart-attempt" not in self.request.headers, "the attempt header was left on the request"
        if isinstance(self.transport, AsyncResilientTransport):
            dog = self.transport._watchdog
            assert dog is None or not dog.due, "a task was left under the watchdog"


@pytest.fixture
def faults() -> Iterator[Faults]:
    faults = Faults()

    def hook(event: object) -> None:
        faults.point("hook")

    add_hook(hook)
    yield faults
    remove_hook(hook)


def run_sync(setup: Setup) -> None:
    transport = setup.transport
    assert isinstance(transport, ResilientTransport)
    try:
        transport.handle_request(setup.request).close()
    except (Exception, InjectedBase):
        pass


async def run_async(setup: Setup) -> None:
    transport = setup.transport
    assert isinstance(transport, AsyncResilientTransport)

    async def send() -> None:
        response = await transport.handle_async_request(setup.request)
        await response.aclose()

    task = asyncio.get_running_loop().create_task(send())
    setup.faults.outer = task
    try:
        await task
    except (Exception, InjectedBase, asyncio.CancelledError):
        pass
    assert task.done()


FAULTS = [("clock", Injected), ("clock", InjectedBase), ("hook", InjectedBase), ("hook", Injected)]


@pytest.mark.parametrize("start", ["half open", "first probe"])
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(("where", "kind"), FAULTS, ids=[f"{w}-{k.__name__}" for w, k in FAULTS])
def test_sync_transport_settles_every_permit(
    faults: Faults, where: str, kind: type[BaseException], script: str, start: str
) -> None:
    fired = 0
    for at in range(1, MAX_POINTS):
        setup = Setup("sync", script, start, faults)
        faults.arm(where, at, kind)
        run_sync(setup)
        faults.disarm()
        setup.check()
        if not faults.fired:
            break
        fired += 1
    else:  # pragma: no cover
        pytest.fail("the request never ended without reaching the point")
    assert fired > 0 or where == "hook"  # every request reads the clock


@pytest.mark.parametrize("flavour", ["async", "hedged"])
@pytest.mark.parametrize("start", ["half open", "first probe"])
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    ("where", "kind"),
    [*FAULTS, ("await", asyncio.CancelledError)],
    ids=[*(f"{w}-{k.__name__}" for w, k in FAULTS), "cancel"],
)
async def test_async_transport_settles_every_permit(
    faults: Faults, where: str, kind: type[BaseException], script: str, start: str, flavour: str
) -> None:
    fired = 0
    for at in range(1, MAX_POINTS):
        setup = Setup(flavour, script, start, faults)
        faults.arm(where, at, kind)
        await run_async(setup)
        faults.disarm()
        await asyncio.sleep(0)  # let cancelled attempt tasks finish
        setup.check()
        if not faults.fired:
            break
        fired += 1
    else:  # pragma: no cover
        pytest.fail("the request never ended without reaching the point")
    assert fired > 0 or where == "hook"
