"""Regression: a store that raised anything but ``StoreUnavailable`` at the claim (or while providing its secret)
made the middleware crash with the exception instead of answering the spec's 503.

``IdempotencyStore`` is a public protocol: applications write their own stores, and a driver error that escapes the
wrapping (a ``ConnectionResetError``, an ``asyncpg`` or ``aiomysql`` error, a ``RuntimeError`` from a closed
executor) reached the server as a 500 without ``Retry-After``; the circuit breaker never counted the failure, and a
claim applied just before the error was never given back (the ambiguous-claim cleanup only ran for
``StoreUnavailable`` and timeouts). Spec §2.8 step 7 / §2.14: "Store error, timeout or undecodable record → 503 with
Retry-After. The handler does not run (G4)". Powertools had the mirror image: persistence errors surfacing as
unrelated exceptions (aws-powertools/powertools-lambda-python #8473). Any exception of the store at those steps is
now treated as the store being unavailable (logged), and fails closed the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from _idem_asgi import SECRET, CountingApp, FaultyStore, post, wrap

from stalwart import CircuitBreaker
from stalwart.idempotency import IdempotencyMiddleware, MemoryStore, RecordDecodeError
from stalwart.testing import FakeClock


def broken_store(error: Exception, *, apply_first: bool = False) -> FaultyStore:
    """A third-party-style store whose driver error escapes its wrapping at every claim (applied first or not)."""
    return FaultyStore(fail_at={"claim"}, applied={"claim"} if apply_first else (), error=lambda operation: error)


async def call(mw: Any) -> tuple[int | None, dict[bytes, bytes]]:
    answer = await post(mw)
    return answer.status, answer.headers


def middleware(app: CountingApp, store: MemoryStore, **kwargs: Any) -> IdempotencyMiddleware:
    kwargs.setdefault("secret", None)  # the store provides it unless the test passes one
    return wrap(app, store, **kwargs)


async def test_a_driver_error_at_the_claim_is_503_with_retry_after() -> None:
    app = CountingApp()
    store = broken_store(ConnectionResetError("connection reset by peer"))
    mw = middleware(app, store, secret=SECRET)
    status, headers = await call(mw)
    assert status == 503
    assert b"retry-after" in headers
    assert app.calls == 0
    assert store.calls["claim"] == 2  # repeated once with the same owner token, like any ambiguous claim
    assert mw.statistics()["store_unavailable_503"] == 1


async def test_a_claim_applied_before_the_error_is_given_back() -> None:
    app = CountingApp()
    store = broken_store(RuntimeError("cannot schedule new futures after shutdown"), apply_first=True)
    mw = middleware(app, store, secret=SECRET)
    assert (await call(mw))[0] == 503
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(store) == 0  # the ambiguous-claim cleanup released it
    assert app.calls == 0


async def test_the_breaker_counts_such_errors_as_failures() -> None:
    breaker = CircuitBreaker("idempotency-store", failure_threshold=1, reset_timeout=30.0, clock=FakeClock())
    app = CountingApp()
    store = broken_store(OSError("network unreachable"))
    mw = middleware(app, store, secret=SECRET, breaker=breaker)
    assert (await call(mw))[0] == 503
    assert store.calls["claim"] == 2
    assert (await call(mw))[0] == 503
    assert store.calls["claim"] == 2  # the breaker opened and answered without asking the store
    assert app.calls == 0


async def test_an_undecodable_record_is_still_503_at_once() -> None:
    store = broken_store(RecordDecodeError("unknown schema_version 9"))
    mw = middleware(CountingApp(), store, secret=SECRET)
    assert (await call(mw))[0] == 503
    assert store.calls["claim"] == 1  # not retried: the record, not the connection, is the problem


async def test_a_driver_error_while_reading_the_stores_secret_is_503() -> None:
    class NoSecret(MemoryStore):
        async def default_secret(self) -> bytes:
            raise ConnectionRefusedError("connection refused")

    app = CountingApp()
    status, headers = await call(middleware(app, NoSecret()))
    assert status == 503
    assert b"retry-after" in headers
    assert app.calls == 0
