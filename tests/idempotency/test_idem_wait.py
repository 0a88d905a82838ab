"""``wait_timeout`` (spec §2.8 step 7): a duplicate polls the store with jittered backoff, never executes, and gets
409 at its deadline or the replay once the original finishes. Time is a controlled clock: no real waits."""

from __future__ import annotations

import asyncio

import pytest
from idem_apps import Probe, client, headers, make_app, wrap

from stalwart.idempotency import IdempotencyConfig, MemoryStore

PAYLOAD = {"amount": 100, "currency": "EUR"}


class PollClock:
    """A monotonic clock that advances by what the duplicate's polls sleep.

    Sleeps of 5 s or more are the original's heartbeat (every ``lease_ttl / 3`` = 10 s): they never end in these
    tests, so only the polls move time.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.polls: list[float] = []
        self.polled = asyncio.Event()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:  # pragma: no cover - the middleware is async
        raise AssertionError("no sync sleeps")

    async def asleep(self, seconds: float) -> None:
        if seconds >= 5.0:
            await asyncio.Event().wait()
        self.polls.append(seconds)
        self.now += seconds
        self.polled.set()
        await asyncio.sleep(0)


async def test_a_duplicate_polls_with_backoff_and_gets_409_at_its_deadline() -> None:
    probe = Probe()
    probe.hold()
    clock = PollClock()
    store = MemoryStore()
    mw = wrap(make_app(probe), store, config=IdempotencyConfig(wait_timeout=3.0), clock=clock, random=lambda: 0.5)
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        duplicate = await c.post("/payments", json=PAYLOAD, headers=headers())
        probe.release()
        first = await original
    assert first.status_code == 201
    assert duplicate.status_code == 409
    assert duplicate.json()["type"].endswith("/idempotency-request-in-progress")
    assert probe.calls == 1
    # 50 ms doubling up to 1 s (jitter factor 0.5 + random() = 1.0 here), the last poll cut to the deadline.
    assert clock.polls[:6] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0])
    assert sum(clock.polls) == pytest.approx(3.0)
    assert max(clock.polls[6:], default=0.0) <= 0.45 + 1e-9


@pytest.mark.parametrize("draw", [0.0, 0.999])
async def test_the_jitter_stays_within_half_to_one_and_a_half_of_the_step(draw: float) -> None:
    probe = Probe()
    probe.hold()
    clock = PollClock()
    mw = wrap(make_app(probe), config=IdempotencyConfig(wait_timeout=2.0), clock=clock, random=lambda: draw)
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        duplicate = await c.post("/payments", json=PAYLOAD, headers=headers())
        probe.release()
        await original
    assert duplicate.status_code == 409
    steps = [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    for poll, step in zip(clock.polls[:-1], steps, strict=False):  # the last one may be cut to the deadline
        assert step * 0.5 <= poll <= step * 1.5
    assert sum(clock.polls) == pytest.approx(2.0)


async def test_a_waiting_duplicate_gets_the_replay_once_the_original_finishes() -> None:
    probe = Probe()
    probe.hold()
    clock = PollClock()
    mw = wrap(make_app(probe), config=IdempotencyConfig(wait_timeout=30.0), clock=clock, random=lambda: 0.5)
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        duplicate = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await clock.polled.wait()  # the duplicate found the original in progress and is polling
        assert not duplicate.done()
        probe.release()
        first, second = await original, await duplicate
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert probe.calls == 1
    assert 0 < sum(clock.polls) < 30.0


async def test_a_different_request_with_the_key_is_422_at_once_without_waiting() -> None:
    probe = Probe()
    probe.hold()
    clock = PollClock()
    mw = wrap(make_app(probe), config=IdempotencyConfig(wait_timeout=30.0), clock=clock)
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        other = await c.post("/payments", json={"amount": 999, "currency": "EUR"}, headers=headers())
        probe.release()
        await original
    assert other.status_code == 422
    assert clock.polls == []
    assert probe.calls == 1
