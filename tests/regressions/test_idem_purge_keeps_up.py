"""Regression: the middleware's purge could not keep up, and ran only when a keyed request arrived (spec §2.15).

§2.15 asks SQL stores for a "periodic batched purge ... in chunks". The middleware made one ``store.purge()`` call
(``limit=1000``) per ``purge_interval``, spawned by the first keyed request after the interval: above about 1000
keys expiring per interval (17/s at the default 60 s) the table grew without bound, and an app with no keyed
traffic for a while never purged at all.

Now a purge run repeats batches while a batch comes back full, capped per run (so one run cannot monopolise the
store; a run that hits the cap is followed by the next after at most 1 s instead of a whole interval). The runs
come from a background task started when the app's lifespan starts up and stopped at shut-down; an app without a
lifespan keeps the request-driven trigger. Live records are never touched (the store purges only expired ones).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from _idem_asgi import CountingApp, GatedClock, StoreClock, post, spin, wrap
from _idem_asgi import Lifespan as ServerLifespan

from stalwart.idempotency import IdempotencyMiddleware, MemoryStore, Outcome, SQLiteStore, StoredResponse


async def settle() -> None:
    await spin(50)


class BacklogStore(MemoryStore):
    """``backlog`` expired records; ``purge`` deletes up to ``limit`` of them and records each call."""

    def __init__(self, backlog: int) -> None:
        super().__init__()
        self.backlog = backlog
        self.calls: list[int] = []

    async def purge(self, *, limit: int = 1000) -> int:
        self.calls.append(limit)
        deleted = min(limit, self.backlog)
        self.backlog -= deleted
        return deleted


async def call(mw: IdempotencyMiddleware, key: str) -> None:
    await post(mw, key=key)


def middleware(store: Any, clock: GatedClock, interval: float = 60.0) -> IdempotencyMiddleware:
    return wrap(CountingApp(status=201, body=b"ok"), store, purge_interval=interval, clock=clock)


class Lifespan(ServerLifespan):
    async def start(self) -> None:
        await super().start()
        assert self.types == ["lifespan.startup.complete"]

    async def stop(self) -> None:
        await super().stop()
        assert self.types[-1] == "lifespan.shutdown.complete"


async def test_a_run_repeats_batches_while_they_come_back_full_then_pauses_briefly_at_the_cap() -> None:
    store, clock = BacklogStore(25_500), GatedClock()
    mw = middleware(store, clock)
    await clock.advance(61.0)
    await call(mw, "k-1")
    await settle()
    assert len(store.calls) == 10  # the cap of one run: 10 000 records
    assert store.backlog == 15_500
    await call(mw, "k-2")  # within the (shortened) pause: nothing more
    await settle()
    assert len(store.calls) == 10
    await clock.advance(1.0)  # a capped run is followed by the next one after 1 s, not a whole interval
    await call(mw, "k-3")
    await settle()
    assert store.backlog == 5_500
    await clock.advance(1.0)
    await call(mw, "k-4")
    await settle()
    assert store.backlog == 0
    assert len(store.calls) == 26  # the last run stopped at its first batch that was not full
    await clock.advance(1.0)
    await call(mw, "k-5")
    await settle()
    assert len(store.calls) == 26  # caught up: back to one run per interval


async def test_with_a_lifespan_purges_run_without_any_request_and_stop_at_shutdown() -> None:
    store, clock = BacklogStore(2_500), GatedClock()
    mw = middleware(store, clock)
    lifespan = Lifespan(mw)
    await lifespan.start()
    await clock.advance(30.0)
    assert store.calls == []
    await clock.advance(30.0)
    assert store.backlog == 0  # one interval, no request: the whole backlog in one run
    assert len(store.calls) == 3
    store.backlog = 100
    await call(mw, "k-1")  # requests do not trigger runs of their own while the task runs
    await settle()
    assert len(store.calls) == 3
    await clock.advance(60.0)
    assert len(store.calls) == 4
    await lifespan.stop()
    store.backlog = 100
    await clock.advance(120.0)
    assert len(store.calls) == 4  # stopped with the app


async def test_an_sql_store_past_the_old_limit_is_emptied_of_expired_records_and_keeps_live_ones(
    tmp_path: Path,
) -> None:
    store_clock = StoreClock()
    path = tmp_path / "idem.sqlite3"
    store = SQLiteStore(path, clock=store_clock, synchronous="NORMAL")
    try:
        for i in range(1_500):
            rid = f"{i:064x}"
            claimed = await store.claim(
                rid, fingerprint=b"f" * 32, fp_version=1, owner_token="o", lease_ttl=30, retention=3600
            )
            response = StoredResponse(Outcome.RESPONSE, 200, (), b"x")
            await store.complete(rid, owner_token="o", fence=claimed.record.fence, response=response, retention=3600)
        store_clock.now += 10_000  # all of them are past their retention
        live = "f" * 64
        await store.claim(live, fingerprint=b"f" * 32, fp_version=1, owner_token="o", lease_ttl=30, retention=3600)
        clock = GatedClock()
        mw = middleware(store, clock)
        lifespan = Lifespan(mw)
        await lifespan.start()
        clock.move(60.0)

        def remaining() -> list[str]:
            rows = sqlite3.connect(path).execute("select record_id from stalwart_idempotency_records").fetchall()
            return [r[0] for r in rows]

        for _ in range(300):  # the SQLite store works in a thread: poll for the run's end (not a timing)
            await asyncio.sleep(0.01)
            if len(remaining()) <= 1:
                break
        await lifespan.stop()
        assert remaining() == [live]
    finally:
        await store.aclose()
