"""The demo's fault upstream over httpx's ASGITransport, on a fake clock."""

from __future__ import annotations

import httpx
import pytest

from stalwart.cli.demo._schedule import FaultSchedule
from stalwart.cli.demo._upstream import FaultUpstream
from stalwart.testing import FakeClock

ORIGIN = 1000.0


class StillClock(FakeClock):
    """A fake clock whose ``asleep`` records the delay without moving time, so a run of calls stays in one phase."""

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _upstream(seed: int = 3) -> tuple[FaultUpstream, FakeClock]:
    clock = StillClock(ORIGIN)
    upstream = FaultUpstream(FaultSchedule.outage(20.0), seed=seed, clock=clock)
    upstream.start(ORIGIN)
    return upstream, clock


def _client(upstream: FaultUpstream) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream), base_url="http://upstream")


@pytest.mark.parametrize(
    ("at", "phase", "status", "slept"),
    [
        (1.0, "healthy", 200, (0.002, 0.008)),
        (4.5, "blip", 503, None),
        (6.0, "steady", 200, (0.002, 0.008)),
        (13.0, "outage", 503, (1.0, 1.0)),
        (17.0, "recovery", 200, (0.002, 0.008)),
        (60.0, "recovery", 200, (0.002, 0.008)),
    ],
)
async def test_behaviour_per_phase(at: float, phase: str, status: int, slept: tuple[float, float] | None) -> None:
    upstream, clock = _upstream()
    clock.advance(at)
    async with _client(upstream) as client:
        response = await client.get("/r/1")
    assert response.status_code == status
    assert response.headers["x-phase"] == phase
    assert response.json() == {"id": 1, "phase": phase}
    if slept is None:
        assert clock.sleeps == []
    else:
        assert len(clock.sleeps) == 1
        assert slept[0] <= clock.sleeps[0] <= slept[1]
    assert upstream.calls == {phase: 1}
    assert upstream.calls_during(phase) == 1


async def test_counts_calls_per_phase_and_not_health_checks() -> None:
    upstream, clock = _upstream()
    async with _client(upstream) as client:
        assert (await client.get("/health")).status_code == 200
        for _ in range(3):
            await client.get("/r/1")
        clock.advance(4.2 - (clock.monotonic() - ORIGIN))
        for index in range(5):
            await client.get(f"/r/{index}")
    assert upstream.calls == {"healthy": 3, "blip": 5}
    assert upstream.calls_during("outage") == 0


async def test_before_start_the_clock_stands_at_zero() -> None:
    clock = FakeClock(5.0)
    upstream = FaultUpstream(FaultSchedule.outage(20.0), clock=clock)
    clock.advance(13.0)  # would be the outage, had the schedule started at 5.0
    assert upstream.elapsed() == 0.0
    async with _client(upstream) as client:
        assert (await client.get("/r/7")).status_code == 200
    assert upstream.calls == {"healthy": 1}


async def _degraded_statuses(upstream: FaultUpstream, clock: FakeClock, ids: range, rounds: int) -> list[int]:
    clock.advance(9.0)
    statuses = []
    async with _client(upstream) as client:
        for _ in range(rounds):
            for index in ids:
                statuses.append((await client.get(f"/r/{index}")).status_code)
    return statuses


async def test_same_seed_same_fates_and_retries_draw_afresh() -> None:
    first = await _degraded_statuses(*_upstream(seed=11), range(200), rounds=2)
    again = await _degraded_statuses(*_upstream(seed=11), range(200), rounds=2)
    other = await _degraded_statuses(*_upstream(seed=12), range(200), rounds=2)
    assert first == again
    assert first != other
    # The second call of a request id (a retry) is a fresh draw, not a replay of the first.
    assert first[:200] != first[200:]
    assert set(first) == {200, 500, 503}
    assert 0.6 <= first.count(200) / len(first) <= 0.8
