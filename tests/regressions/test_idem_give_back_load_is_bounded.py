"""Regression: every failed claim spawned its own give-back loop, so a store outage turned into a flood.

A claim whose answer is lost may have been applied; it is given back in the background (a read, then a
compare-and-set release, retried with backoff for up to twice the lease). Each failed claim spawned one such loop:
200 requests against a down store left 200 live tasks making about 1000 reads in 2 s; at 1000 requests/s an outage
builds up some 60,000 tasks hammering the store as it recovers. Loops were spawned even when the failure proved the
claim never reached the store (a refused connection before the first command, a strict server check).

Now (with the safety kept: a claim that may have been applied is still given back):

- a failure the store marks ``not_applied = True`` spawns no give-back;
- one give-back per record id at a time: another owner of the same id joins the running one, which releases the
  record if any of its owners holds it;
- at most ``max_give_backs`` at once; beyond it the newest is dropped, counted in ``give_backs_dropped`` and logged
  (at most once per 10 s, with the count).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from _idem_asgi import CountingApp, FaultyStore, GatedClock, StoreClock, post, refused, unavailable, wrap

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware
from stalwart.idempotency.stores._redis_checks import read_settings
from stalwart.idempotency.stores.redis import RedisStore, server_problems


class FlakyStore(FaultyStore):
    """``mode`` "refused": nothing reaches the store (marked not applied); "lost": the claim is applied, its answer
    lost; "ambiguous": nothing applied, but the failure cannot tell; reads fail while ``reads_down``."""

    def __init__(self) -> None:
        super().__init__(clock=StoreClock())

    @property
    def gets(self) -> int:
        return self.calls["get"]

    @property
    def mode(self) -> str:
        if "claim" not in self.fail_at:
            return "ok"
        return "lost" if "claim" in self.applied else "refused" if self.error is refused else "ambiguous"

    @mode.setter
    def mode(self, mode: str) -> None:
        assert mode in ("ok", "refused", "ambiguous", "lost")
        self.fail_at.discard("claim")
        self.applied.discard("claim")
        if mode != "ok":
            self.fail_at.add("claim")
        if mode == "lost":
            self.applied.add("claim")
        self.error = refused if mode == "refused" else unavailable

    @property
    def reads_down(self) -> bool:
        return "get" in self.fail_at

    @reads_down.setter
    def reads_down(self, down: bool) -> None:
        if down:
            self.fail_at.add("get")
        else:
            self.fail_at.discard("get")


async def call(mw: IdempotencyMiddleware, key: str) -> int | None:
    return (await post(mw, key=key)).status


def middleware(
    store: FlakyStore, clock: GatedClock, app: CountingApp | None = None, **kwargs: Any
) -> IdempotencyMiddleware:
    return wrap(
        app or CountingApp(),
        store,
        config=IdempotencyConfig(lease_ttl=30.0),
        clock=clock,
        purge_interval=None,
        random=lambda: 0.5,
        **kwargs,
    )


async def stop(mw: IdempotencyMiddleware) -> None:
    for task in list(mw._background):
        task.cancel()
    await asyncio.gather(*mw._background, return_exceptions=True)


async def test_a_claim_that_never_reached_the_store_is_not_given_back() -> None:
    store, clock = FlakyStore(), GatedClock()
    mw = middleware(store, clock)
    store.mode = "refused"
    for i in range(50):
        assert await call(mw, f"k-{i}") == 503
    await asyncio.sleep(0)
    assert not mw._background
    assert store.gets == 0


async def test_at_most_one_give_back_per_record_id() -> None:
    store, clock = FlakyStore(), GatedClock()
    mw = middleware(store, clock)
    store.mode, store.reads_down = "ambiguous", True
    for _ in range(50):
        assert await call(mw, "same-key") == 503
    await asyncio.sleep(0)
    assert len(mw._background) == 1
    await clock.advance(1.0, turns=20)
    assert store.gets <= 3  # one loop backing off, not fifty
    await stop(mw)


async def test_give_backs_are_capped_and_the_newest_dropped_with_a_logged_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = FlakyStore(), GatedClock()
    mw = middleware(store, clock, max_give_backs=10)
    store.mode, store.reads_down = "ambiguous", True
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        for i in range(200):
            assert await call(mw, f"k-{i}") == 503
    await asyncio.sleep(0)
    assert len(mw._background) == 10
    assert mw.statistics()["give_backs_dropped"] == 190
    warnings = [r.getMessage() for r in caplog.records if "give-backs" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: once per 10 s
    assert "dropped 1 so far" in warnings[0]
    caplog.clear()
    await clock.advance(10.0, turns=20)
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        assert await call(mw, "k-late") == 503
    assert any("dropped 191 so far" in r.getMessage() for r in caplog.records)
    # The first ten keep their give-back: once the store answers, they finish and free their slots.
    store.reads_down = False
    await clock.advance(1.0, turns=20)
    assert not mw._background
    assert await call(mw, "k-next") == 503
    await asyncio.sleep(0)
    assert len(mw._background) == 1
    await stop(mw)


def test_max_give_backs_is_validated() -> None:
    with pytest.raises(ValueError, match="max_give_backs"):
        middleware(FlakyStore(), GatedClock(), max_give_backs=0)


async def test_an_owner_joining_a_running_give_back_is_released_too() -> None:
    """Safety of the merge: the second request's claim landed (its answer lost) while the first one's give-back was
    retrying; the shared give-back releases the second owner's record, and the key runs once the store answers."""
    store, clock, app = FlakyStore(), GatedClock(), CountingApp()
    mw = middleware(store, clock, app)
    store.mode, store.reads_down = "ambiguous", True
    assert await call(mw, "k-1") == 503  # owner A: nothing applied, but the failure cannot tell
    store.mode = "lost"
    assert await call(mw, "k-1") == 503  # owner B: applied, answer lost; B joins A's give-back
    assert len(mw._background) == 1
    store.mode, store.reads_down = "ok", False
    await clock.advance(1.0, turns=20)
    assert not mw._background
    assert await call(mw, "k-1") == 201  # B's record was released: nothing ran before
    assert app.calls == 1


@pytest.mark.integration
@pytest.mark.parametrize("where", ["unreachable", "strict-check"])
async def test_redis_marks_a_claim_refused_before_sending_as_not_applied(where: str) -> None:
    url = "redis://127.0.0.1:1/0" if where == "unreachable" else "redis://127.0.0.1:6379/0"
    store = RedisStore.from_url(url, prefix="test:give-back-not-applied", strict_server_checks=True)
    try:
        if where == "strict-check" and not server_problems(await read_settings(store.client)):
            pytest.skip("the shared Redis is configured for the guarantees; nothing to refuse")
        mw = wrap(CountingApp(), store, purge_interval=None)
        for i in range(3):
            assert await call(mw, f"k-{i}") == 503
        await asyncio.sleep(0)
        assert not mw._background  # nothing reached the store: nothing to give back
    finally:
        await store.aclose()
