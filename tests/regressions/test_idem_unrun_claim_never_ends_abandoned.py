"""Regression: a claim the store applied but never acknowledged could end as "outcome unknown" for a whole retention.

When both claim attempts fail (a store brownout: the script ran, its reply timed out), the client gets 503 and the
handler does not run; the claim, possibly applied, is given back in the background. That give-back made one attempt
(a read, then a compare-and-set release). In a brownout that attempt fails as the claim did, so the record stayed in
progress; once its lease lapsed, the client's retry turned it ABANDONED and got the 500 ``idempotency-outcome-unknown``
— and so did every retry for the retention (24 h by default), although the handler provably never ran. A give-back
also skipped a record already turned ABANDONED this way.

The give-back now retries with backoff (on the middleware's clock) for up to twice the lease, and releases the record
when it is still this claim's, in progress or abandoned (the release is a compare-and-set on owner and fence, so it
never touches another request's record).
"""

from __future__ import annotations

import asyncio

from _idem_asgi import CountingApp, FaultyStore, StoreClock, post, settle_background, wrap

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware
from stalwart.testing import FakeClock


def brownout_store(clock: StoreClock) -> FaultyStore:
    """Claims are applied but their answer is lost while "claim" is in ``fail_at``; reads fail ``fail_next["get"]``
    times."""
    return FaultyStore(clock=clock, applied={"claim"})


async def call(mw: IdempotencyMiddleware) -> int | None:
    return (await post(mw)).status


async def settle(mw: IdempotencyMiddleware) -> None:
    await settle_background(mw, turns=200, what="give-back")


async def test_a_claim_given_back_during_a_brownout_is_released_once_the_store_answers() -> None:
    store_clock = StoreClock()
    store = brownout_store(store_clock)
    app = CountingApp()
    mw = wrap(app, store, config=IdempotencyConfig(lease_ttl=30.0), clock=FakeClock(), purge_interval=None)
    store.fail_at.add("claim")
    store.fail_next["get"] = 3  # the give-back's first reads fail too
    assert await call(mw) == 503
    store.fail_at.discard("claim")
    await settle(mw)
    store_clock.now += 31.0  # the lease of the unacknowledged claim has lapsed by the time the client retries
    assert await call(mw) == 201  # the handler runs: it never ran before
    assert app.calls == 1


async def test_a_give_back_releases_a_record_a_retry_already_abandoned() -> None:
    store_clock = StoreClock()
    store = brownout_store(store_clock)
    app = CountingApp()
    clock = FakeClock()
    mw = wrap(app, store, config=IdempotencyConfig(lease_ttl=30.0), clock=clock, purge_interval=None)
    store.fail_at.add("claim")
    store.fail_next["get"] = 10**9
    assert await call(mw) == 503
    for _ in range(5):  # the give-back's reads keep failing: it keeps retrying
        await asyncio.sleep(0)
    store.fail_at.discard("claim")
    store.fail_next["get"] = 0
    store_clock.now += 31.0
    # The client's retry comes first: it finds the lapsed lease and abandons the record (outcome unknown)...
    assert await call(mw) == 500
    await settle(mw)
    # ... then the give-back releases it (still this claim's), and the next retry runs the handler.
    assert await call(mw) == 201
    assert app.calls == 1
