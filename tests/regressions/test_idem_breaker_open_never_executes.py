"""Regression: an open store breaker ran the handler on ``fail_open`` routes (spec §2.14, §2.8 step 7).

§2.14: "while [the breaker is] open, answer 503 immediately. Breaker state never triggers execution." ``fail_open=True``
is the escape hatch for a store that *failed* (error, timeout): it runs the handler without idempotency. The middleware
treated the breaker's refusal (``CircuitOpenError``) like a store failure, so with ``fail_open=True`` an open breaker
— tripped by an earlier outage or forced open by an operator — ran every request without idempotency, twice for one
key, although the store was not even asked.

Now an open breaker answers 503 ``idempotency-store-unavailable`` with ``Retry-After`` (the breaker's own remaining
open time when it knows it, capped by ``retry_after_cap``; otherwise the usual 1-2 s) on every route; ``fail_open``
still applies to a store that failed.
"""

from __future__ import annotations

from typing import Any

import pytest
from _idem_asgi import CountingApp, FaultyStore, post, wrap

from stalwart import CircuitBreaker
from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware
from stalwart.testing import FakeClock


async def call(mw: IdempotencyMiddleware, key: bytes = b"k-1") -> tuple[int | None, dict[bytes, bytes], bytes]:
    answer = await post(mw, key=key)
    return answer.status, answer.headers, answer.body


def middleware(app: CountingApp, store: FaultyStore, breaker: CircuitBreaker, **config: Any) -> IdempotencyMiddleware:
    return wrap(
        app, store, breaker=breaker, config=IdempotencyConfig(**config), purge_interval=None, random=lambda: 0.0
    )


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_forced_open_breaker_answers_503_and_never_runs_the_handler(fail_open: bool) -> None:
    app, store = CountingApp(), FaultyStore()
    breaker = CircuitBreaker("idem-store", failure_threshold=1)
    breaker.force_open()
    mw = middleware(app, store, breaker, fail_open=fail_open)
    for _ in range(2):
        status, headers, body = await call(mw)
        assert status == 503
        assert b"idempotency-store-unavailable" in body
        assert headers[b"retry-after"] in (b"1", b"2")
    assert app.calls == 0
    assert store.calls["claim"] == 0
    stats = mw.statistics()
    assert stats["fail_open_bypasses"] == 0
    assert stats["store_unavailable_503"] == 2


async def test_a_breaker_tripped_by_an_outage_stops_the_fail_open_bypass() -> None:
    clock = FakeClock()
    app, store = CountingApp(), FaultyStore()
    breaker = CircuitBreaker("idem-store", failure_threshold=1, reset_timeout=30.0, clock=clock)
    mw = middleware(app, store, breaker, fail_open=True, retry_after_cap=5.0)
    store.fail_at.add("claim")  # connection refused
    assert (await call(mw, b"k-1"))[0] == 201  # the store failed: fail_open is the explicit escape hatch
    assert app.calls == 1
    assert mw.statistics()["fail_open_bypasses"] == 1
    store.fail_at.discard("claim")  # the breaker is open now: its state must not run anything
    status, headers, _ = await call(mw, b"k-2")
    assert status == 503
    assert headers[b"retry-after"] == b"5"  # the breaker's 30 s, capped by retry_after_cap
    assert app.calls == 1
    clock.advance(10.0)
    assert (await call(mw, b"k-3"))[1][b"retry-after"] == b"5"
    clock.advance(17.5)
    assert (await call(mw, b"k-4"))[1][b"retry-after"] == b"3"  # 2.5 s left, rounded up
    assert app.calls == 1
    assert mw.statistics()["fail_open_bypasses"] == 1
