"""Store harnesses for the idempotency tests: every store behind the same interface.

Stores with an injectable clock (memory, SQLite) get a :class:`ManualClock`, so time passes only when a test says
so; the others run on their server's clock and ``pass_time`` really waits (tests keep those waits short).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from idem_durable import postgres_store, redis_store

from stalwart.idempotency import IdempotencyStore
from stalwart.idempotency.stores import MemoryStore, SQLiteStore

STORE_KINDS = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("postgres", marks=pytest.mark.integration),
]


class ManualClock:
    """A wall-clock stand-in (epoch seconds) that moves only when told."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@dataclass
class Harness:
    kind: str
    store: IdempotencyStore
    clock: ManualClock | None

    @property
    def controllable(self) -> bool:
        return self.clock is not None

    @property
    def short_lease(self) -> float:
        """A lease that a test lets lapse with :meth:`pass_time` (really short for server clocks)."""
        return 10.0 if self.controllable else 0.05

    async def pass_time(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)


async def make_harness(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Harness:
    if kind == "memory":
        clock = ManualClock()
        return Harness(kind, MemoryStore(clock=clock), clock)
    if kind == "sqlite":
        clock = ManualClock()
        return Harness(kind, SQLiteStore(tmp_path / "idem.sqlite3", clock=clock), clock)
    if kind in ("redis", "postgres"):  # real servers: unique prefix / schema, removed after the test
        return Harness(kind, redis_store(request) if kind == "redis" else postgres_store(request), None)
    raise AssertionError(kind)


class YieldingClock:
    """A monotonic clock that stands still; ``asleep`` only yields to the event loop and records the delay.

    Lets a test skip backoff sleeps without the fake time racing ahead (as a ``FakeClock`` shared with a
    heartbeat loop would).
    """

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)
