"""The demo's fault schedule (pure): phase layout, lookups and per-call fates."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart.cli.demo._schedule import (
    Fault,
    FaultProfile,
    FaultSchedule,
    Phase,
    PhaseKind,
    decide,
    describe,
)


def test_outage_schedule_layout_at_default_duration() -> None:
    schedule = FaultSchedule.outage(20.0)
    assert [(p.name, p.kind, p.start, p.end) for p in schedule.phases] == [
        ("healthy", PhaseKind.HEALTHY, 0.0, 4.0),
        ("blip", PhaseKind.BLIP, 4.0, 5.0),
        ("steady", PhaseKind.HEALTHY, 5.0, 8.0),
        ("degraded", PhaseKind.DEGRADED, 8.0, 12.0),
        ("outage", PhaseKind.OUTAGE, 12.0, 16.0),
        ("recovery", PhaseKind.HEALTHY, 16.0, math.inf),
    ]
    assert schedule.duration == 20.0


@pytest.mark.parametrize(
    ("duration", "blip"),
    [(5.0, 0.5), (10.0, 1.0), (20.0, 1.0), (60.0, 1.0)],
)
def test_blip_lasts_one_second_capped_at_a_tenth_of_the_run(duration: float, blip: float) -> None:
    phase = FaultSchedule.outage(duration).phase("blip")
    assert phase.end - phase.start == pytest.approx(blip)


@pytest.mark.parametrize(
    ("elapsed", "name"),
    [
        (-1.0, "healthy"),
        (0.0, "healthy"),
        (3.999, "healthy"),
        (4.0, "blip"),
        (4.999, "blip"),
        (5.0, "steady"),
        (8.0, "degraded"),
        (12.0, "outage"),
        (15.999, "outage"),
        (16.0, "recovery"),
        (20.0, "recovery"),
        (1e9, "recovery"),
    ],
)
def test_phase_at(elapsed: float, name: str) -> None:
    assert FaultSchedule.outage(20.0).phase_at(elapsed).name == name


def test_phase_by_name_and_unknown_name() -> None:
    schedule = FaultSchedule.outage(20.0)
    assert schedule.phase("outage").kind is PhaseKind.OUTAGE
    with pytest.raises(KeyError):
        schedule.phase("nope")


@pytest.mark.parametrize("duration", [0.0, 4.99, -1.0, math.inf, math.nan])
def test_outage_rejects_bad_duration(duration: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        FaultSchedule.outage(duration)


def test_outage_rejects_bad_blip() -> None:
    with pytest.raises(ValueError, match="blip"):
        FaultSchedule.outage(20.0, blip=0.0)


@pytest.mark.parametrize(
    ("phases", "match"),
    [
        ((), "empty"),
        ((Phase("a", PhaseKind.HEALTHY, 0.0, 1.0), Phase("a", PhaseKind.BLIP, 1.0, math.inf)), "unique"),
        ((Phase("a", PhaseKind.HEALTHY, 0.5, math.inf),), "contiguous"),
        ((Phase("a", PhaseKind.HEALTHY, 0.0, 1.0), Phase("b", PhaseKind.BLIP, 2.0, math.inf)), "contiguous"),
        ((Phase("a", PhaseKind.HEALTHY, 0.0, 1.0),), "inf"),
    ],
)
def test_schedule_validation(phases: tuple[Phase, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultSchedule(phases, 10.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"degraded_error_rate": 1.5}, "degraded_error_rate"),
        ({"spike_rate": -0.1}, "spike_rate"),
        ({"latency": (0.2, 0.1)}, "latency"),
        ({"spike_latency": (0.1, math.inf)}, "spike_latency"),
        ({"outage_delay": -1.0}, "outage_delay"),
    ],
)
def test_profile_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultProfile(**kwargs)  # type: ignore[arg-type]


def _fixed(*values: float):  # type: ignore[no-untyped-def]
    it = iter(values)
    return lambda: next(it)


PROFILE = FaultProfile()


@pytest.mark.parametrize(
    ("kind", "draws", "expected"),
    [
        (PhaseKind.BLIP, (), Fault(503, 0.0)),
        (PhaseKind.OUTAGE, (), Fault(503, 1.0)),
        (PhaseKind.HEALTHY, (0.0, 0.0), Fault(200, 0.002)),
        (PhaseKind.HEALTHY, (0.99, 1.0), Fault(200, 0.008)),
        # degraded: first draw < 0.15 → 500, < 0.30 → 503, then the latency draw
        (PhaseKind.DEGRADED, (0.10, 0.5), Fault(500, 0.005)),
        (PhaseKind.DEGRADED, (0.20, 0.5), Fault(503, 0.005)),
        # 0.30 + 0.70 * 0.10 = 0.37 → in the spike band (first 15 % of the successes); third draw sizes the spike
        (PhaseKind.DEGRADED, (0.37, 0.5, 0.0), Fault(200, 0.3)),
        (PhaseKind.DEGRADED, (0.37, 0.5, 1.0), Fault(200, 0.9)),
        (PhaseKind.DEGRADED, (0.50, 0.5), Fault(200, 0.005)),
    ],
)
def test_decide_table(kind: PhaseKind, draws: tuple[float, ...], expected: Fault) -> None:
    fault = decide(kind, PROFILE, _fixed(*draws))
    assert fault.status == expected.status
    assert fault.delay == pytest.approx(expected.delay)


def test_degraded_rates_over_many_calls() -> None:
    rng = random.Random(1)
    faults = [decide(PhaseKind.DEGRADED, PROFILE, rng.random) for _ in range(20000)]
    errors = sum(f.status != 200 for f in faults) / len(faults)
    slow = sum(f.status == 200 and f.delay >= 0.3 for f in faults) / sum(f.status == 200 for f in faults)
    assert errors == pytest.approx(0.30, abs=0.02)
    assert slow == pytest.approx(0.15, abs=0.02)
    assert {f.status for f in faults} == {200, 500, 503}


@given(st.sampled_from(list(PhaseKind)), st.lists(st.floats(0.0, 0.999999), min_size=3, max_size=3))
def test_decide_is_a_function_of_its_draws(kind: PhaseKind, draws: list[float]) -> None:
    first = decide(kind, PROFILE, _fixed(*draws))
    assert first == decide(kind, PROFILE, _fixed(*draws))
    assert first.status in {200, 500, 503}
    assert 0.0 <= first.delay <= max(PROFILE.outage_delay, PROFILE.spike_latency[1])


@given(st.floats(5.0, 600.0), st.floats(-10.0, 700.0))
def test_phases_cover_the_timeline(duration: float, elapsed: float) -> None:
    schedule = FaultSchedule.outage(duration)
    phase = schedule.phase_at(elapsed)
    assert phase.start <= max(elapsed, 0.0) < phase.end
    assert [p.name for p in schedule.phases] == ["healthy", "blip", "steady", "degraded", "outage", "recovery"]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (PhaseKind.HEALTHY, "200 after 2-8 ms"),
        (PhaseKind.BLIP, "every call: 503 at once"),
        (PhaseKind.DEGRADED, "30% fail (500/503), 15% of the rest slow (0.3-0.9 s)"),
        (PhaseKind.OUTAGE, "every call: 503 after 1 s"),
    ],
)
def test_describe(kind: PhaseKind, text: str) -> None:
    assert describe(kind, PROFILE) == text
