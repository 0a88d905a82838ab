"""Store harnesses for the idempotency tests: every store behind the same interface.

Stores with an injectable clock (memory, SQLite) get a :class:`ManualClock`, so time passes only when a test says
so; the others run on their server's clock and ``pass_time`` really waits (tests keep those waits short).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from stalwart.idempotency import IdempotencyStore
from stalwart.idempotency.stores import MemoryStore, SQLiteStore

STORE_KINDS = ["memory", "sqlite"]


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
    raise AssertionError(kind)
