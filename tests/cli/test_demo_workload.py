"""The demo's open-loop driver, on a fake clock: arrival times, the in-flight cap, queueing and latency."""

from __future__ import annotations

import asyncio

import pytest

from stalwart.cli.demo._summary import Kind
from stalwart.cli.demo._workload import arrival_offsets, run_open_loop
from stalwart.testing import FakeClock


@pytest.mark.parametrize(
    ("requests", "duration", "expected"),
    [(1, 10.0, [0.0]), (4, 2.0, [0.0, 0.5, 1.0, 1.5]), (3, 3.0, [0.0, 1.0, 2.0])],
)
def test_arrival_offsets(requests: int, duration: float, expected: list[float]) -> None:
    assert arrival_offsets(requests, duration) == pytest.approx(expected)


@pytest.mark.parametrize(("requests", "duration", "match"), [(0, 1.0, "requests"), (1, 0.0, "duration")])
def test_arrival_offsets_rejects(requests: int, duration: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        arrival_offsets(requests, duration)


async def test_requests_start_when_due_whatever_the_earlier_ones_do() -> None:
    clock = FakeClock(100.0)
    started: list[tuple[int, float]] = []
    offsets = [0.0, 0.5, 1.0, 2.5]

    async def send(index: int) -> Kind:
        started.append((index, clock.monotonic()))
        return "ok"

    outcomes = await run_open_loop(send, offsets, start=100.0, concurrency=10, clock=clock)
    # The driver sleeps exactly until the next request is due (the fake clock jumps as it sleeps) ...
    assert clock.sleeps == [0.5, 0.5, 1.5]
    # ... and never sends a request before it is due.
    assert [index for index, _ in started] == [0, 1, 2, 3]
    assert all(at >= 100.0 + offsets[index] for index, at in started)
    assert [o.kind for o in outcomes] == ["ok"] * 4


async def test_no_more_than_concurrency_in_flight_and_the_rest_queue() -> None:
    clock = FakeClock()
    release = asyncio.Event()
    in_flight = 0
    peak = 0

    async def send(index: int) -> Kind:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return "ok"

    run = asyncio.create_task(run_open_loop(send, [0.0] * 7, start=0.0, concurrency=3, clock=clock))
    for _ in range(20):
        await asyncio.sleep(0)
    assert in_flight == 3
    release.set()
    outcomes = await run
    assert peak == 3
    assert len(outcomes) == 7


async def test_latency_counts_from_the_due_time_including_the_queue() -> None:
    clock = FakeClock()

    async def send(index: int) -> Kind:
        clock.advance(1.0)  # each request takes one (fake) second
        await asyncio.sleep(0)
        return "ok"

    outcomes = await run_open_loop(send, [0.0, 0.0, 0.0], start=0.0, concurrency=1, clock=clock)
    assert [o.latency for o in outcomes] == [1.0, 2.0, 3.0]


async def test_outcomes_in_request_order_with_kinds_and_on_done() -> None:
    kinds: list[Kind] = ["ok", "fallback", "failed", "ok"]
    seen: list[Kind] = []

    async def send(index: int) -> Kind:
        await asyncio.sleep(0.001 * (4 - index))  # finish in reverse order
        return kinds[index]

    outcomes = await run_open_loop(send, [0.0] * 4, start=0.0, concurrency=4, clock=FakeClock(), on_done=seen.append)
    assert [o.kind for o in outcomes] == kinds
    assert sorted(seen) == sorted(kinds)


async def test_an_exception_from_send_counts_as_failed() -> None:
    async def send(index: int) -> Kind:
        if index == 1:
            raise RuntimeError("boom")
        return "ok"

    outcomes = await run_open_loop(send, [0.0, 0.0, 0.0], start=0.0, concurrency=2, clock=FakeClock())
    assert [o.kind for o in outcomes] == ["ok", "failed", "ok"]


async def test_cancelling_the_run_cancels_every_request() -> None:
    entered = 0
    cancelled = 0

    async def send(index: int) -> Kind:
        nonlocal entered, cancelled
        entered += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return "ok"  # pragma: no cover

    run = asyncio.create_task(run_open_loop(send, [0.0] * 5, start=0.0, concurrency=3, clock=FakeClock()))
    for _ in range(20):
        await asyncio.sleep(0)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert entered == 3
    assert cancelled == 3


async def test_rejects_bad_concurrency() -> None:
    async def send(index: int) -> Kind:
        return "ok"  # pragma: no cover

    with pytest.raises(ValueError, match="concurrency"):
        await run_open_loop(send, [0.0], start=0.0, concurrency=0)
