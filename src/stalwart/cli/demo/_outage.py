"""The ``outage`` scenario: one workload, two clients, two identical misbehaving upstreams, side by side.

Both sides run **at the same time**, each against its own :class:`FaultUpstream` (same schedule, same seed, same
clock origin, separate counters): the run takes one ``duration`` instead of two, and both sides meet each phase at
the same moment, so what differs between them is the client alone. Each side (its upstream server, its client and
its workload) runs on its own thread and event loop, so a burst on one side does not stall the other's timers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httpx

from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._events import CircuitStateChanged, Event, RetryBudgetExhausted, add_hook, remove_hook
from stalwart._registry import Registry
from stalwart._retry_policy import RetryBudgetHook
from stalwart.httpx import PerOriginBudget, ResilienceConfig

from ._clients import CountingTransport, demo_config, plain_client, resilient_client, sender
from ._schedule import FaultSchedule, describe
from ._server import bind_loopback, serving, url_of
from ._summary import (
    ANSWER_WITHIN,
    BudgetEffect,
    DemoResult,
    Kind,
    Outcome,
    Transition,
    due_between,
    retries_from_attempts,
    summarize,
)
from ._threads import LoopThread, run_side_by_side
from ._upstream import FaultUpstream
from ._workload import arrival_offsets, run_open_loop

__all__ = ["MAX_REQUESTS", "BudgetWatch", "DemoSettings", "TransitionRecorder", "run_outage"]

MAX_REQUESTS = 100_000
"""The most requests per side (``--requests``): memory and run time grow with it (5 million took 1.2 GB in 12 s)."""

DEFAULT_SEED = 2015
"""The fixed default seed (any integer works; the same seed gives the same fates)."""

SLOW = ANSWER_WITHIN
"""Seconds beyond which the report counts a request as slow (a user would likely have given up)."""


_START_DELAY = 0.2
"""Seconds between binding the sockets and the first request being due (time for the threads to start serving;
a connection made earlier waits in the socket's backlog)."""


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """The demo's knobs (the CLI's options).

    Attributes:
        requests: requests per side, 1 to :data:`MAX_REQUESTS` (default 2000).
        concurrency: most requests in flight per side; later ones queue (default 50).
        seed: seeds the upstream's fates (default :data:`DEFAULT_SEED`).
        duration: seconds over which the requests are spread, and the length of the schedule (default 20).

    Raises:
        ValueError: ``requests`` out of range, ``concurrency`` < 1, or ``duration`` below 5 s or not finite.
    """

    requests: int = 2000
    concurrency: int = 50
    seed: int = DEFAULT_SEED
    duration: float = 20.0

    def __post_init__(self) -> None:
        if not 1 <= self.requests <= MAX_REQUESTS:
            raise ValueError(f"requests must be between 1 and {MAX_REQUESTS}, got {self.requests!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency!r}")
        if not 5.0 <= self.duration < math.inf:
            raise ValueError(f"duration must be at least 5 seconds, got {self.duration!r}")


class TransitionRecorder:
    """A stalwart hook that keeps every ``CircuitStateChanged`` event as a :class:`Transition`.

    Args:
        origin: monotonic time the run started (``at_s`` is measured from it); settable later.
    """

    def __init__(self, origin: float = 0.0) -> None:
        self.origin = origin
        self.transitions: list[Transition] = []

    def __call__(self, event: Event) -> None:
        """Record ``event`` if it is a breaker state change."""
        if isinstance(event, CircuitStateChanged):
            at_s = round(event.at - self.origin, 3)
            self.transitions.append(Transition(at_s, event.from_state, event.to_state))


class BudgetWatch:
    """The resilient side's retry budget, watched: builds it and counts its refusals per phase.

    Passed as the config's ``budget`` factory, :meth:`build` makes exactly the budget the transport makes by
    default (``factory``, default ``PerOriginBudget()``: 20 % of the last 10 s of calls plus 10 retries per second,
    per origin) and keeps it, so its statistics can be read after the run. As a stalwart hook it counts the
    ``RetryBudgetExhausted`` events of those budgets, by the phase of ``schedule`` they fell in.

    Args:
        schedule: the upstream's schedule.
        clock: the clock of the schedule (``origin`` is on it).
        origin: ``clock.monotonic()`` at the start of the run; settable later.
        factory: the budget factory to watch (default ``PerOriginBudget()``, the transport's default).
    """

    def __init__(
        self,
        schedule: FaultSchedule,
        clock: Clock = SYSTEM_CLOCK,
        origin: float = 0.0,
        factory: Callable[[str, Clock], RetryBudgetHook] | None = None,
    ) -> None:
        self.schedule = schedule
        self.clock = clock
        self.origin = origin
        self.factory: Callable[[str, Clock], RetryBudgetHook] = PerOriginBudget() if factory is None else factory
        self.budgets: list[RetryBudgetHook] = []
        self.refused: Counter[str] = Counter()

    def build(self, name: str, clock: Clock) -> RetryBudgetHook:
        """The budget of the origin ``name`` (the config's ``budget`` factory)."""
        budget = self.factory(name, clock)
        self.budgets.append(budget)
        return budget

    def __call__(self, event: Event) -> None:
        """Count a refusal by one of the watched budgets."""
        if isinstance(event, RetryBudgetExhausted) and any(b.name == event.name for b in self.budgets):
            self.refused[self.schedule.phase_at(self.clock.monotonic() - self.origin).name] += 1

    def granted(self) -> int:
        """Retries the watched budgets granted."""
        return sum(_statistics(budget)[0] for budget in self.budgets)

    def refusals(self) -> int:
        """Retries the watched budgets refused."""
        return sum(_statistics(budget)[1] for budget in self.budgets)


def _statistics(budget: RetryBudgetHook) -> tuple[int, int]:
    statistics = getattr(budget, "statistics", None)
    if statistics is None:
        return 0, 0
    stats = statistics()
    return int(stats.granted), int(stats.refused)


def _settings_lines(config: ResilienceConfig) -> tuple[tuple[str, str], ...]:
    backoff = config.backoff
    return (
        ("per-attempt timeout", f"{config.timeout:g} s"),
        ("attempts", str(config.max_attempts)),
        (
            "backoff",
            f"exponential from {backoff.initial * 1000:g} ms, x{backoff.multiplier:g}, "
            f"at most {backoff.max_delay * 1000:g} ms, {backoff.jitter.kind} jitter",
        ),
        ("breaker opens after", f"{config.failure_threshold} consecutive failures"),
        ("reset_timeout", f"{config.reset_timeout:g} s"),
        (
            "bulkhead",
            f"{config.max_concurrent} in flight, queue {config.max_queue}, "
            f"a wait of at most {config.queue_timeout:g} s",
        ),
        ("retry budget", "the default: retries at most 20 % of the last 10 s of calls + 10 per second"),
        ("fallback", "a default answer"),
    )


def _slower_than(outcomes: list[Outcome], seconds: float) -> int:
    return sum(1 for outcome in outcomes if outcome.latency > seconds)


@dataclass(frozen=True, slots=True)
class _Side:
    """What one side needs to run: its upstream, its listening socket and how to build its client."""

    name: str
    upstream: FaultUpstream
    sock: socket.socket
    client: Callable[[str], tuple[httpx.AsyncClient, CountingTransport]]


async def _run_side(
    side: _Side,
    settings: DemoSettings,
    start: float,
    clock: Clock,
    on_done: Callable[[str, Kind, str], None] | None,
) -> tuple[list[Outcome], CountingTransport]:
    """One side, on its own loop: serve its upstream, send the workload through its client, stop both."""
    schedule = side.upstream.schedule
    done: Callable[[Kind], None] | None = None
    if on_done is not None:
        callback = on_done

        def done(kind: Kind) -> None:
            callback(side.name, kind, schedule.phase_at(clock.monotonic() - start).name)

    async with serving(side.upstream, side.sock) as url:
        client, counter = side.client(url)
        async with client:
            outcomes = await run_open_loop(
                sender(client),
                arrival_offsets(settings.requests, settings.duration),
                start=start,
                concurrency=settings.concurrency,
                clock=clock,
                on_done=done,
            )
    return outcomes, counter


def run_outage(
    settings: DemoSettings,
    *,
    on_start: Callable[[list[str]], None] | None = None,
    on_done: Callable[[str, Kind, str], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> DemoResult:
    """Run the ``outage`` scenario and measure both sides (blocks for about ``settings.duration`` seconds).

    Each side runs on its own thread and event loop (:func:`run_side_by_side`): its own upstream server, client
    and workload. Both upstreams follow the same schedule from the same origin.

    Args:
        settings: the demo's knobs.
        on_start: called with the two upstreams' base URLs (plain, resilient) once their sockets listen.
        on_done: called as ``(side, kind, phase_name)`` when a request ends, from that side's thread (for a
            progress bar; it must be thread-safe).
        clock: the clock of the schedule and the latencies (default the system clock).

    Returns:
        Both sides' summaries, the breaker's transitions and the per-phase call counts.

    Raises:
        KeyboardInterrupt: interrupted; both sides were stopped (servers, clients, sockets) first.

    Everything started here (threads, servers, clients, the event hook) is stopped on the way out.
    """
    schedule = FaultSchedule.outage(settings.duration)
    watch = BudgetWatch(schedule, clock)
    config = dataclasses.replace(demo_config(settings.concurrency), budget=watch.build)
    recorder = TransitionRecorder()
    sockets: list[socket.socket] = []
    try:
        for _ in range(2):
            sockets.append(bind_loopback())
        sides = (
            _Side(
                "plain",
                FaultUpstream(schedule, seed=settings.seed, clock=clock),
                sockets[0],
                lambda url: plain_client(url, settings.concurrency),
            ),
            _Side(
                "resilient",
                FaultUpstream(schedule, seed=settings.seed, clock=clock),
                sockets[1],
                lambda url: resilient_client(
                    url, settings.concurrency, config=config, registry=Registry(), seed=settings.seed, clock=clock
                ),
            ),
        )
        if on_start is not None:
            on_start([url_of(sock) for sock in sockets])
        start = clock.monotonic() + _START_DELAY
        for side in sides:
            side.upstream.start(start)
        recorder.origin = start
        watch.origin = start
        threads = [
            LoopThread(
                f"stalwart-demo-{side.name}",
                functools.partial(_run_side, side, settings, start, clock, on_done),
            )
            for side in sides
        ]
        add_hook(recorder)
        add_hook(watch)
        try:
            run_side_by_side(threads)
        finally:
            remove_hook(watch)
            remove_hook(recorder)
    finally:
        for sock in sockets:
            sock.close()
    (plain_outcomes, plain_counter), (resilient_outcomes, resilient_counter) = (t.result() for t in threads)
    plain, resilient = sides
    outage = schedule.phase("outage")
    budget = BudgetEffect(
        no_retry_load=due_between(arrival_offsets(settings.requests, settings.duration), outage.start, outage.end),
        outage_calls=resilient.upstream.calls_during("outage"),
        outage_retries=resilient.upstream.retries_during("outage"),
        blip_retries=resilient.upstream.retries_during("blip"),
        blip_refused=watch.refused["blip"],
        granted=watch.granted(),
        refused=watch.refusals(),
    )
    return DemoResult(
        plain=summarize(
            plain_outcomes,
            retries=retries_from_attempts(plain_counter.attempts),
            upstream_calls_during_outage=plain.upstream.calls_during("outage"),
        ),
        resilient=summarize(
            resilient_outcomes,
            retries=retries_from_attempts(resilient_counter.attempts),
            upstream_calls_during_outage=resilient.upstream.calls_during("outage"),
        ),
        transitions=tuple(recorder.transitions),
        phases=tuple(
            (phase.name, describe(phase.kind, schedule.profile), phase.start, min(phase.end, settings.duration))
            for phase in schedule.phases
        ),
        calls={side.name: dict(side.upstream.calls) for side in sides},
        slow={"plain": _slower_than(plain_outcomes, SLOW), "resilient": _slower_than(resilient_outcomes, SLOW)},
        settings=_settings_lines(config),
        retries=dict(resilient.upstream.retries),
        refused=dict(watch.refused),
        budget=budget,
        bulkhead_wait=cast("float", config.queue_timeout) if config.use_bulkhead else None,  # float once built
    )
