"""Regression: a "not processed, retry" outcome whose release was lost in a store brownout ended as "outcome unknown".

When the handler answers a status the spec releases (429, 503 …), raises one of ``retryable_exceptions``, calls
``state.release()`` or never starts (a marker route), the record is released so that the client's retry runs the
handler. The release was tried only within the completion budget on the request path (``completion_attempts``,
``completion_budget``); in a store brownout every attempt failed, the record stayed in progress, its lease lapsed and
the client's retry turned it ABANDONED: a 500 ``idempotency-outcome-unknown`` for the whole retention (24 h by
default), although nothing was processed.

A release that fails on the request path is now handed to the give-back of an unacknowledged claim (commit 9060ef9):
retried in the background with backoff, on the middleware's clock, for up to twice the lease, a compare-and-set on
owner and fence that also releases the record when a retry has meanwhile abandoned it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _idem_asgi import CountingApp, FaultyStore, StoreClock, post, settle_background, wrap

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, current_idempotency
from stalwart.testing import FakeClock


class NotApplied(Exception):
    pass


def brownout_store(clock: StoreClock) -> FaultyStore:
    """Releases fail while "release" is in ``fail_at``; reads while "get" is (the give-back reads first)."""
    return FaultyStore(clock=clock)


async def _send_429(send: Any) -> None:
    await send({"type": "http.response.start", "status": 429, "headers": []})
    await send({"type": "http.response.body", "body": b"slow down"})


async def _raise_retryable(send: Any) -> None:
    raise NotApplied("the payment provider refused before charging")


async def _ask_for_release(send: Any) -> None:
    state = current_idempotency()
    assert state is not None
    state.release()
    await send({"type": "http.response.start", "status": 409, "headers": []})
    await send({"type": "http.response.body", "body": b"busy, retry"})


NOT_PROCESSED = {
    "release_status": _send_429,
    "retryable_exception": _raise_retryable,
    "release_helper": _ask_for_release,
}


async def call(mw: IdempotencyMiddleware) -> int:
    answer = await post(mw, swallow=NotApplied)  # re-raised to the server after the record was settled
    return answer.status if answer.status is not None else 500


async def settle(mw: IdempotencyMiddleware) -> None:
    await settle_background(mw, turns=500, what="background release")


def middleware(app: CountingApp, store: FaultyStore, clock: FakeClock) -> IdempotencyMiddleware:
    config = IdempotencyConfig(lease_ttl=30.0, retryable_exceptions=(NotApplied,))
    return wrap(app, store, config=config, clock=clock, purge_interval=None)


@pytest.mark.parametrize("outcome", sorted(NOT_PROCESSED))
async def test_a_release_lost_in_a_brownout_is_retried_until_the_store_answers(outcome: str) -> None:
    store_clock = StoreClock()
    store = brownout_store(store_clock)
    app = CountingApp(first=NOT_PROCESSED[outcome])
    mw = middleware(app, store, FakeClock())
    store.fail_at.add("release")
    await call(mw)  # every release attempt on the request path fails
    for _ in range(5):  # the background release keeps trying
        await asyncio.sleep(0)
    store.fail_at.discard("release")
    await settle(mw)
    store_clock.now += 31.0  # the client retries after the lease would have lapsed
    assert await call(mw) == 201  # nothing was processed: the handler runs now
    assert app.calls == 2


async def test_a_lost_release_also_releases_a_record_a_retry_already_abandoned() -> None:
    store_clock = StoreClock()
    store = brownout_store(store_clock)
    app = CountingApp(first=_send_429)
    mw = middleware(app, store, FakeClock())
    store.fail_at.add("release")
    store.fail_at.add("get")
    assert await call(mw) == 429
    for _ in range(5):
        await asyncio.sleep(0)
    store.fail_at.discard("release")
    store.fail_at.discard("get")
    store_clock.now += 31.0
    # The client's retry comes first: it finds the lapsed lease and abandons the record (outcome unknown)...
    assert await call(mw) == 500
    await settle(mw)
    # ... then the background release gives it back (still this execution's), and the next retry runs the handler.
    assert await call(mw) == 201
    assert app.calls == 2


async def test_the_background_release_gives_up_after_twice_the_lease() -> None:
    store = brownout_store(StoreClock())
    clock = FakeClock()
    mw = middleware(CountingApp(first=_send_429), store, clock)
    store.fail_at.add("release")
    store.fail_at.add("get")
    start = clock.monotonic()
    assert await call(mw) == 429
    await settle(mw)  # it stops by itself while the store is still down
    assert 60.0 <= clock.monotonic() - start <= 60.0 + 5.0
