"""Regression: the Redis server check ran on the first request, not at start-up (spec intro, §2.16.3).

"Redis server settings that break the guarantees ... are reported at start-up through the ``stalwart`` logger, and
raise an error when ``strict_server_checks=True``." The middleware passed the ASGI lifespan straight through, so the
store checked its server only on its first operation: start-up succeeded silently, and with
``strict_server_checks=True`` every request then answered 503 — a misconfigured service that looked healthy.

Now the middleware handles ``lifespan.startup``: it runs the store's start-up check (``check_server()`` when the store
has one) before passing the event on to the app. Problems are logged at start-up; a strict refusal fails the start-up
with ``lifespan.startup.failed`` (the app never sees the event); a store that cannot be reached is logged and checked
again on first use.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from _idem_asgi import run_lifespan, wrap

from stalwart import StoreUnavailable
from stalwart.idempotency import IdempotencyMiddleware, MemoryStore
from stalwart.idempotency.stores._redis_checks import read_settings
from stalwart.idempotency.stores.redis import RedisServerCheckError, RedisStore, server_problems

PROBLEM = "maxmemory-policy is allkeys-lru: a live in-progress record may be evicted"


class CheckedStore(MemoryStore):
    def __init__(self, outcome: BaseException | list[str]) -> None:
        super().__init__()
        self.outcome = outcome
        self.checks = 0

    async def check_server(self) -> list[str]:
        self.checks += 1
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        for problem in self.outcome:
            logging.getLogger("stalwart").warning("store: %s", problem)
        return self.outcome


class LifespanApp:
    """Records the lifespan events it receives (and the store checks made by then); completes start-up."""

    def __init__(self, store: Any = None) -> None:
        self.events: list[tuple[str, int]] = []
        self.store = store

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            self.events.append((message["type"], getattr(self.store, "checks", -1)))
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


def middleware(app: Any, store: Any) -> IdempotencyMiddleware:
    return wrap(app, store, purge_interval=None)


async def test_problems_are_logged_at_startup_before_the_app_starts(caplog: pytest.LogCaptureFixture) -> None:
    store = CheckedStore([PROBLEM])
    app = LifespanApp(store)
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        sent = await run_lifespan(middleware(app, store))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app.events == [("lifespan.startup", 1), ("lifespan.shutdown", 1)]  # checked before the app started
    assert any(PROBLEM in r.getMessage() for r in caplog.records)


async def test_a_strict_refusal_fails_the_startup() -> None:
    store = CheckedStore(RedisServerCheckError([PROBLEM]))
    app = LifespanApp(store)
    sent = await run_lifespan(middleware(app, store))
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert PROBLEM in sent[0]["message"]
    assert app.events == []  # the app never starts


async def test_a_store_that_cannot_be_reached_is_logged_and_startup_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CheckedStore(StoreUnavailable("connection refused"))
    app = LifespanApp(store)
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        sent = await run_lifespan(middleware(app, store))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert any("connection refused" in r.getMessage() for r in caplog.records)


async def test_a_store_without_a_check_passes_the_lifespan_through() -> None:
    app = LifespanApp()
    sent = await run_lifespan(middleware(app, MemoryStore()))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert [event for event, _ in app.events] == ["lifespan.startup", "lifespan.shutdown"]


@pytest.mark.integration
@pytest.mark.parametrize("strict", [False, True])
async def test_redis_settings_are_checked_at_startup(strict: bool, caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore.from_url(
        "redis://127.0.0.1:6379/0", prefix=f"test:startup:{uuid.uuid4().hex}", strict_server_checks=strict
    )
    try:
        problems = server_problems(await read_settings(store.client))
        if not problems:
            pytest.skip("the shared Redis is configured for the guarantees; nothing to report")
        app = LifespanApp()
        with caplog.at_level(logging.WARNING, logger="stalwart"):
            sent = await run_lifespan(middleware(app, store))
        assert all(any(p in r.getMessage() for r in caplog.records) for p in problems)
        if strict:
            assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
            assert all(p in sent[0]["message"] for p in problems)
        else:
            assert sent[0]["type"] == "lifespan.startup.complete"
    finally:
        await store.aclose()
