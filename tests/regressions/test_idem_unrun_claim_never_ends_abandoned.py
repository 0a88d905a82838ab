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
from typing import Any

from stalwart import StoreUnavailable
from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, Identity, MemoryStore
from stalwart.testing import FakeClock

SECRET = b"s" * 32


class StoreClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class BrownoutStore(MemoryStore):
    """Claims are applied but their answer is lost while ``down``; reads and releases fail ``failing_reads`` times."""

    def __init__(self, clock: StoreClock) -> None:
        super().__init__(clock=clock)
        self.down = False
        self.failing_reads = 0

    async def claim(self, record_id: str, **kwargs: Any) -> Any:
        result = await super().claim(record_id, **kwargs)
        if self.down:
            raise StoreUnavailable("the claim's reply timed out")
        return result

    async def get(self, record_id: str) -> Any:
        if self.failing_reads:
            self.failing_reads -= 1
            raise StoreUnavailable("read timed out")
        return await super().get(record_id)


class App:
    calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"charged"})


async def call(mw: IdempotencyMiddleware) -> int:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/payments",
        "raw_path": b"/payments",
        "query_string": b"",
        "headers": [(b"idempotency-key", b"k-1")],
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await mw(scope, receive, send)
    return statuses[0]


async def settle(mw: IdempotencyMiddleware) -> None:
    for _ in range(200):
        if not mw._background:
            return
        await asyncio.sleep(0)
    raise AssertionError("the give-back did not finish")


async def test_a_claim_given_back_during_a_brownout_is_released_once_the_store_answers() -> None:
    store_clock = StoreClock()
    store = BrownoutStore(store_clock)
    app = App()
    mw = IdempotencyMiddleware(
        app,
        store=store,
        resolver=lambda scope: Identity("alice"),
        secret=SECRET,
        config=IdempotencyConfig(lease_ttl=30.0),
        clock=FakeClock(),
        purge_interval=None,
    )
    store.down = True
    store.failing_reads = 3  # the give-back's first reads fail too
    assert await call(mw) == 503
    store.down = False
    await settle(mw)
    store_clock.now += 31.0  # the lease of the unacknowledged claim has lapsed by the time the client retries
    assert await call(mw) == 201  # the handler runs: it never ran before
    assert app.calls == 1


async def test_a_give_back_releases_a_record_a_retry_already_abandoned() -> None:
    store_clock = StoreClock()
    store = BrownoutStore(store_clock)
    app = App()
    clock = FakeClock()
    mw = IdempotencyMiddleware(
        app,
        store=store,
        resolver=lambda scope: Identity("alice"),
        secret=SECRET,
        config=IdempotencyConfig(lease_ttl=30.0),
        clock=clock,
        purge_interval=None,
    )
    store.down = True
    store.failing_reads = 10**9
    assert await call(mw) == 503
    for _ in range(5):  # the give-back's reads keep failing: it keeps retrying
        await asyncio.sleep(0)
    store.down = False
    store.failing_reads = 0
    store_clock.now += 31.0
    # The client's retry comes first: it finds the lapsed lease and abandons the record (outcome unknown)...
    assert await call(mw) == 500
    await settle(mw)
    # ... then the give-back releases it (still this claim's), and the next retry runs the handler.
    assert await call(mw) == 201
    assert app.calls == 1
