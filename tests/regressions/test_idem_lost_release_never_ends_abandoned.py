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

from stalwart import StoreUnavailable
from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, Identity, MemoryStore, current_idempotency
from stalwart.testing import FakeClock

SECRET = b"s" * 32


class NotApplied(Exception):
    pass


class StoreClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class BrownoutStore(MemoryStore):
    """Releases fail while ``releases_down``; reads fail while ``reads_down`` (the give-back reads first)."""

    def __init__(self, clock: StoreClock) -> None:
        super().__init__(clock=clock)
        self.releases_down = False
        self.reads_down = False

    async def release(self, record_id: str, **kwargs: Any) -> bool:
        if self.releases_down:
            raise StoreUnavailable("the release timed out")
        return await super().release(record_id, **kwargs)

    async def get(self, record_id: str) -> Any:
        if self.reads_down:
            raise StoreUnavailable("read timed out")
        return await super().get(record_id)


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


class App:
    def __init__(self, first: Any) -> None:
        self.first = first
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await receive()
        if self.calls == 1:
            await self.first(send)
            return
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

    try:
        await mw(scope, receive, send)
    except NotApplied:
        pass  # re-raised to the server after the record was settled
    return statuses[0] if statuses else 500


async def settle(mw: IdempotencyMiddleware) -> None:
    for _ in range(500):
        if not mw._background:
            return
        await asyncio.sleep(0)
    raise AssertionError("the background release did not finish")


def middleware(app: App, store: MemoryStore, clock: FakeClock) -> IdempotencyMiddleware:
    return IdempotencyMiddleware(
        app,
        store=store,
        resolver=lambda scope: Identity("alice"),
        secret=SECRET,
        config=IdempotencyConfig(lease_ttl=30.0, retryable_exceptions=(NotApplied,)),
        clock=clock,
        purge_interval=None,
    )


@pytest.mark.parametrize("outcome", sorted(NOT_PROCESSED))
async def test_a_release_lost_in_a_brownout_is_retried_until_the_store_answers(outcome: str) -> None:
    store_clock = StoreClock()
    store = BrownoutStore(store_clock)
    app = App(NOT_PROCESSED[outcome])
    mw = middleware(app, store, FakeClock())
    store.releases_down = True
    await call(mw)  # every release attempt on the request path fails
    for _ in range(5):  # the background release keeps trying
        await asyncio.sleep(0)
    store.releases_down = False
    await settle(mw)
    store_clock.now += 31.0  # the client retries after the lease would have lapsed
    assert await call(mw) == 201  # nothing was processed: the handler runs now
    assert app.calls == 2


async def test_a_lost_release_also_releases_a_record_a_retry_already_abandoned() -> None:
    store_clock = StoreClock()
    store = BrownoutStore(store_clock)
    app = App(_send_429)
    mw = middleware(app, store, FakeClock())
    store.releases_down = True
    store.reads_down = True
    assert await call(mw) == 429
    for _ in range(5):
        await asyncio.sleep(0)
    store.releases_down = False
    store.reads_down = False
    store_clock.now += 31.0
    # The client's retry comes first: it finds the lapsed lease and abandons the record (outcome unknown)...
    assert await call(mw) == 500
    await settle(mw)
    # ... then the background release gives it back (still this execution's), and the next retry runs the handler.
    assert await call(mw) == 201
    assert app.calls == 2


async def test_the_background_release_gives_up_after_twice_the_lease() -> None:
    store = BrownoutStore(StoreClock())
    clock = FakeClock()
    mw = middleware(App(_send_429), store, clock)
    store.releases_down = True
    store.reads_down = True
    start = clock.monotonic()
    assert await call(mw) == 429
    await settle(mw)  # it stops by itself while the store is still down
    assert 60.0 <= clock.monotonic() - start <= 60.0 + 5.0
