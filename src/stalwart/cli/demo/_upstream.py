"""The demo's upstream: a Starlette app whose behaviour follows a :class:`FaultSchedule`.

``GET /r/{id}`` is one request of the workload. The app looks up the phase at the moment the call arrives, draws
the call's fate with :func:`decide` from a random source seeded by ``(seed, id, n)`` where ``n`` counts the calls
seen for that id (so the first attempt of request 17 meets the same fate on every upstream built with the same
seed, and its retries get fresh draws), waits, and answers. It counts the calls it receives per phase: that count
is how the demo measures the load that reached the upstream during the outage. It also counts, per phase, the calls
that were retries, as a server sees them: a ``Stalwart-Attempt`` header above 1 (the stalwart transport numbers its
attempts; a plain client sends no such header).

``GET /health`` always answers 200 and is not counted.
"""

from __future__ import annotations

import random as _random
from collections import Counter

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from stalwart._clock import SYSTEM_CLOCK, Clock

from ._schedule import FaultSchedule, decide

__all__ = ["ATTEMPT_HEADER", "FaultUpstream"]

ATTEMPT_HEADER = "stalwart-attempt"
"""The attempt-number header the stalwart transport sends by default (``ResilienceConfig.attempt_header``)."""


class FaultUpstream:
    """An ASGI app that misbehaves on schedule and counts the calls it receives per phase.

    Args:
        schedule: the phases to follow.
        seed: seeds every call's fate (default 0).
        clock: where ``monotonic()`` and ``asleep()`` come from (default the system clock; tests pass a
            :class:`stalwart.testing.FakeClock`).

    Attributes:
        schedule: the schedule it follows.
        calls: calls received per phase name (a :class:`collections.Counter`).
        retries: calls received per phase name whose ``Stalwart-Attempt`` header says they were retries.

    The schedule's clock starts at :meth:`start`; before that the elapsed time counts as 0 (the first phase).
    The counters are updated on the server's event loop and may be read from another thread.
    """

    def __init__(self, schedule: FaultSchedule, *, seed: int = 0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.schedule = schedule
        self.calls: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self._seed = seed
        self._clock = clock
        self._origin: float | None = None
        self._seen: Counter[int] = Counter()
        self._app = Starlette(routes=[Route("/r/{rid:int}", self._work), Route("/health", self._health)])

    def start(self, origin: float) -> None:
        """Start the schedule's clock: ``origin`` is the ``clock.monotonic()`` value at which the run begins."""
        self._origin = origin

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (0.0 before it)."""
        if self._origin is None:
            return 0.0
        return self._clock.monotonic() - self._origin

    def calls_during(self, phase_name: str) -> int:
        """Calls received while the phase called ``phase_name`` was on (0 for an unknown name)."""
        return self.calls[phase_name]

    def retries_during(self, phase_name: str) -> int:
        """Retries received while the phase called ``phase_name`` was on (0 for an unknown name)."""
        return self.retries[phase_name]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        await self._app(scope, receive, send)

    async def _work(self, request: Request) -> Response:
        rid: int = request.path_params["rid"]
        phase = self.schedule.phase_at(self.elapsed())
        self.calls[phase.name] += 1
        attempt = request.headers.get(ATTEMPT_HEADER)
        if attempt is not None and attempt != "1":
            self.retries[phase.name] += 1
        nth = self._seen[rid]
        self._seen[rid] = nth + 1
        fate = decide(phase.kind, self.schedule.profile, _random.Random(f"{self._seed}:{rid}:{nth}").random)
        if fate.delay > 0:
            await self._clock.asleep(fate.delay)
        return JSONResponse({"id": rid, "phase": phase.name}, status_code=fate.status, headers={"x-phase": phase.name})

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})
