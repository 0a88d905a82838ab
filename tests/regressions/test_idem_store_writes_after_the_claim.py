"""Regression: the writes that finish a record were not equally robust to a store blip.

1. **Release was tried once.** A handler answering 429/503/401 (or asking for ``release()``) means "not processed,
   retry" (spec §2.9). If that single release failed on a transient store error, the record stayed IN_PROGRESS: the
   client's retry got 409 until the lease lapsed and then, in strict mode, a 500 "outcome unknown" for the whole
   retention, although the request provably did nothing. Completion already had a retry budget (§2.8 step 9);
   release now uses the same one (and, since, goes on in the background when that budget runs out).
2. **An ambiguous completion was reported as a lost lease.** When a ``complete`` was applied but its answer lost
   (a timeout, a dropped connection; SQLite's worker thread finishes a write the caller stopped waiting for), the
   retry's compare-and-set failed because the record was already COMPLETED by us, and the middleware counted
   ``lease_lost`` and logged "the result is delivered, not stored" — false alarms for operators, the kind of
   misreport Powertools had after its optimistic writes (aws-powertools/powertools-lambda-java #2260). After a
   failed attempt, a refused compare is now checked against the record: completed by this owner and fence means
   stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from _idem_asgi import CountingApp, FaultyStore, post, wrap

from stalwart.idempotency import IdempotencyMiddleware, MemoryStore


class StillClock:
    """Monotonic time that stands still; short waits (backoff) yield, long ones (heartbeats) wait until cancelled."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds >= 1.0:
            await asyncio.Event().wait()
        await asyncio.sleep(0)


def blipping_store(fail: int = 1, *, apply_then_fail: bool = False) -> FaultyStore:
    """``release``/``complete`` fail the first ``fail`` times; with ``apply_then_fail`` the write lands first."""
    writes = ("release", "complete")
    return FaultyStore(fail_next=dict.fromkeys(writes, fail), applied=writes if apply_then_fail else ())


def answering(status: int) -> CountingApp:
    return CountingApp(status, body=lambda run: f"run {run}".encode())


async def call(mw: Any) -> tuple[int | None, bytes]:
    answer = await post(mw)
    return answer.status, answer.body


def middleware(app: CountingApp, store: MemoryStore) -> IdempotencyMiddleware:
    return wrap(app, store, clock=StillClock())


@pytest.mark.parametrize("status", [429, 503, 401])
async def test_a_release_that_fails_once_is_retried_and_the_retry_executes(status: int) -> None:
    store = blipping_store(fail=1)
    app = answering(status)
    mw = middleware(app, store)
    assert await call(mw) == (status, b"run 1")
    assert len(store) == 0  # released on the second try
    assert store.calls["release"] == 2
    assert await call(mw) == (status, b"run 2")  # "not processed, retry": the retry runs
    assert app.calls == 2


async def test_a_release_that_keeps_failing_on_the_request_path_goes_on_in_the_background(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # (It used to stop there and leave the lease to lapse into "outcome unknown": see
    # test_idem_lost_release_never_ends_abandoned.py.)
    store = blipping_store(fail=4)
    app = answering(429)
    mw = middleware(app, store)
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        assert await call(mw) == (429, b"run 1")  # the real answer is delivered anyway
    assert "releasing the record failed (attempt 3)" in caplog.text  # the completion budget: 3 tries in the request
    assert "given back in the background" in caplog.text
    for _ in range(100):
        if not mw._background:
            break
        await asyncio.sleep(0)
    assert store.calls["release"] == 5  # one more failure, then the background release lands
    assert not store._records
    assert await call(mw) == (429, b"run 2")  # "not processed, retry": the retry runs
    assert app.calls == 2


async def test_a_completion_applied_but_unanswered_is_not_a_lost_lease(caplog: pytest.LogCaptureFixture) -> None:
    store = blipping_store(fail=1, apply_then_fail=True)
    app = answering(201)
    mw = middleware(app, store)
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        assert await call(mw) == (201, b"run 1")
    assert store.calls["complete"] == 2
    assert mw.statistics()["lease_lost"] == 0
    assert mw.statistics()["completion_write_failures"] == 0
    assert "not stored" not in caplog.text
    assert await call(mw) == (201, b"run 1")  # the replay
    assert app.calls == 1


async def test_a_completion_refused_after_a_failed_attempt_by_another_owner_is_still_a_lost_lease() -> None:
    store = blipping_store(fail=1)
    app = answering(201)
    mw = middleware(app, store)

    original_complete = store.complete

    async def complete_after_a_takeover(record_id: str, **kwargs: Any) -> bool:
        if store.calls["complete"] == 1:  # between the two attempts another owner takes the record over
            (record,) = store._records.values()
            store._records[record_id] = dataclasses.replace(record, owner_token="other", fence=99)
        return await original_complete(record_id, **kwargs)

    store.complete = complete_after_a_takeover  # type: ignore[method-assign]
    assert await call(mw) == (201, b"run 1")
    assert mw.statistics()["lease_lost"] == 1
