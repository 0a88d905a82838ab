"""Keep ``benchmarks/bench_breaker_redis.py`` from rotting: every row builds and runs a few iterations against the real
Redis, and the target pairs name its rows. No timing is asserted."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import _harness  # noqa: E402
import bench_breaker_redis  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    try:
        yield event_loop
    finally:
        event_loop.close()


@pytest.mark.usefixtures("redis_url")
def test_every_row_runs(loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setattr(bench_breaker_redis, "REDIS_URL", redis_url)
    cases = _harness.prepare(bench_breaker_redis.cases(), loop)
    assert {c.name: c.unavailable for c in cases if c.unavailable} == {}
    try:
        for case in cases:
            assert _harness.run_once(case, loop, 5) > 0  # nanoseconds: the row ran
    finally:
        loop.run_until_complete(bench_breaker_redis.aclose())
    names = {c.name for c in cases}
    for _, shared, local in bench_breaker_redis.TARGET_PAIRS:
        assert {shared, local} <= names
    assert len(names) == len(cases)
