"""The fault schedule: what the demo's upstream does at each moment of the run (pure).

A :class:`FaultSchedule` is a sequence of :class:`Phase` objects laid out on a clock that starts at 0 when the
workload starts. Each phase has a :class:`PhaseKind` that decides, with :func:`decide`, the status code and the
delay of one call from a random number source. Nothing here reads a clock, sleeps or holds state: the upstream
(`_upstream.py`) passes the elapsed time and a seeded ``random`` in.

The ``outage`` schedule (:meth:`FaultSchedule.outage`) is the one ``stalwart demo`` runs. Its boundaries are fixed
fractions of the run, except the blip, which lasts one second (at most a tenth of the run)::

    0.00   healthy    answers 200 after a few milliseconds
    0.20   blip       one second: every call fails fast with 503
    +1 s   steady     healthy again, so the breaker can close before the next phase
    0.40   degraded   30 % of calls fail (500 or 503, half each); 15 % of the others are slow (0.3-0.9 s)
    0.60   outage     every call fails with 503, after a 1 s hang (a gateway timing out on a dead service)
    0.80   recovery   healthy until the end
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Fault", "FaultProfile", "FaultSchedule", "Phase", "PhaseKind", "decide", "describe"]


class PhaseKind(enum.StrEnum):
    """How the upstream behaves during a phase."""

    HEALTHY = "healthy"
    BLIP = "blip"
    DEGRADED = "degraded"
    OUTAGE = "outage"


@dataclass(frozen=True, slots=True)
class Phase:
    """One stretch of the schedule.

    Attributes:
        name: unique name within the schedule (``"healthy"``, ``"blip"``, ``"outage"``, ...).
        kind: the behaviour during the phase.
        start: seconds since the schedule's origin at which the phase begins (inclusive).
        end: seconds at which it ends (exclusive; ``math.inf`` for the last phase).
    """

    name: str
    kind: PhaseKind
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Fault:
    """What the upstream does with one call.

    Attributes:
        status: the HTTP status code it answers.
        delay: seconds (``float``) it waits before answering.
    """

    status: int
    delay: float


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """The numbers behind each :class:`PhaseKind` (defaults: the demo's).

    Attributes:
        latency: ``(low, high)`` seconds of a normal answer, drawn uniformly (default 2-8 ms).
        degraded_error_rate: fraction of calls in a degraded phase that fail, in [0, 1] (default 0.30); half
            answer 500 and half 503.
        spike_rate: fraction of the *other* degraded calls that are slow, in [0, 1] (default 0.15).
        spike_latency: ``(low, high)`` seconds of a slow answer (default 0.3-0.9 s).
        blip_status: the status of every call during a blip (default 503, answered at once).
        outage_status: the status of every call during an outage (default 503).
        outage_delay: seconds an outage call hangs before its answer (default 1.0).
    """

    latency: tuple[float, float] = (0.002, 0.008)
    degraded_error_rate: float = 0.30
    spike_rate: float = 0.15
    spike_latency: tuple[float, float] = (0.3, 0.9)
    blip_status: int = 503
    outage_status: int = 503
    outage_delay: float = 1.0

    def __post_init__(self) -> None:
        for name in ("degraded_error_rate", "spike_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        for name in ("latency", "spike_latency"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high or math.isinf(high):
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high < inf, got {(low, high)!r}")
        if not 0.0 <= self.outage_delay < math.inf:
            raise ValueError(f"outage_delay must be a finite number of seconds >= 0, got {self.outage_delay!r}")


def _uniform(bounds: tuple[float, float], random: Callable[[], float]) -> float:
    low, high = bounds
    return low + (high - low) * random()


def decide(kind: PhaseKind, profile: FaultProfile, random: Callable[[], float]) -> Fault:
    """Decide the fate of one call.

    Args:
        kind: the phase the call arrived in.
        profile: the numbers to use.
        random: a source of floats in [0, 1); called a fixed number of times per kind (so a seeded source gives
            the same fate for the same call).

    Returns:
        The status to answer and the delay before answering.
    """
    if kind is PhaseKind.BLIP:
        return Fault(profile.blip_status, 0.0)
    if kind is PhaseKind.OUTAGE:
        return Fault(profile.outage_status, profile.outage_delay)
    draw = random()
    latency = _uniform(profile.latency, random)
    if kind is PhaseKind.DEGRADED:
        if draw < profile.degraded_error_rate:
            return Fault(500 if draw < profile.degraded_error_rate / 2 else 503, latency)
        # Rescale the remaining part of the draw to [0, 1) so the spike rate applies to the calls that succeed.
        if (draw - profile.degraded_error_rate) / (1.0 - profile.degraded_error_rate) < profile.spike_rate:
            return Fault(200, _uniform(profile.spike_latency, random))
    return Fault(200, latency)


def describe(kind: PhaseKind, profile: FaultProfile) -> str:
    """A short human description of what the upstream does during a phase of ``kind``."""
    low, high = (round(x * 1000) for x in profile.latency)
    if kind is PhaseKind.BLIP:
        return f"every call: {profile.blip_status} at once"
    if kind is PhaseKind.OUTAGE:
        return f"every call: {profile.outage_status} after {profile.outage_delay:g} s"
    if kind is PhaseKind.DEGRADED:
        slow_low, slow_high = profile.spike_latency
        return (
            f"{profile.degraded_error_rate:.0%} fail (500/503), "
            f"{profile.spike_rate:.0%} of the rest slow ({slow_low:g}-{slow_high:g} s)"
        )
    return f"200 after {low}-{high} ms"


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    """A sequence of contiguous phases starting at 0; the last one lasts forever.

    Attributes:
        phases: the phases in order; the first starts at 0, each starts where the previous ends.
        duration: seconds the workload is meant to run (where the last phase nominally ends).
        profile: the numbers behind each phase kind.

    Raises:
        ValueError: no phases, names not unique, or phases not contiguous from 0.
    """

    phases: tuple[Phase, ...]
    duration: float
    profile: FaultProfile = FaultProfile()

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("phases must not be empty")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names!r}")
        expected = 0.0
        for phase in self.phases:
            if phase.start != expected or phase.end <= phase.start:
                raise ValueError(f"phases must be contiguous from 0 with end > start, got {self.phases!r}")
            expected = phase.end
        if expected != math.inf:
            raise ValueError("the last phase must end at math.inf")

    @classmethod
    def from_boundaries(
        cls, spec: Sequence[tuple[str, PhaseKind, float]], duration: float, profile: FaultProfile | None = None
    ) -> FaultSchedule:
        """Build a schedule from ``(name, kind, start_seconds)`` triples in order (the first start must be 0)."""
        phases = []
        for index, (name, kind, start) in enumerate(spec):
            end = spec[index + 1][2] if index + 1 < len(spec) else math.inf
            phases.append(Phase(name, kind, float(start), float(end)))
        return cls(tuple(phases), duration, profile if profile is not None else FaultProfile())

    @classmethod
    def outage(cls, duration: float, *, blip: float = 1.0, profile: FaultProfile | None = None) -> FaultSchedule:
        """The ``outage`` scenario: healthy, blip, steady, degraded, outage, recovery (see the module docstring).

        Args:
            duration: seconds the workload runs; phases are fractions of it. Must be at least 5.
            blip: seconds the blip lasts (default 1.0), capped at a tenth of ``duration``.
            profile: the numbers behind each phase (default :class:`FaultProfile()`).

        Raises:
            ValueError: ``duration`` below 5 s or not finite, or ``blip`` not positive.
        """
        if not 5.0 <= duration < math.inf:
            raise ValueError(f"duration must be at least 5 seconds, got {duration!r}")
        if not blip > 0:
            raise ValueError(f"blip must be > 0 seconds, got {blip!r}")
        blip = min(blip, 0.1 * duration)
        spec = [
            ("healthy", PhaseKind.HEALTHY, 0.0),
            ("blip", PhaseKind.BLIP, 0.2 * duration),
            ("steady", PhaseKind.HEALTHY, 0.2 * duration + blip),
            ("degraded", PhaseKind.DEGRADED, 0.4 * duration),
            ("outage", PhaseKind.OUTAGE, 0.6 * duration),
            ("recovery", PhaseKind.HEALTHY, 0.8 * duration),
        ]
        return cls.from_boundaries(spec, duration, profile)

    def phase_at(self, elapsed: float) -> Phase:
        """The phase at ``elapsed`` seconds since the origin (before 0: the first phase)."""
        for phase in self.phases:
            if elapsed < phase.end:
                return phase
        return self.phases[-1]  # only reached for NaN

    def phase(self, name: str) -> Phase:
        """The phase called ``name``.

        Raises:
            KeyError: no such phase.
        """
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)
