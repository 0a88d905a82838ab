"""Regression: in transactional mode, a ``StoreUnavailable`` raised *after the handler had started* was taken for
"the store cannot decide" (spec §2.14), the answer for a transaction that could not even be opened.

- A handler that raised ``StoreUnavailable`` itself (its own Redis or breaker-guarded store, a stalwart component)
  got its exception swallowed into a 503 ``idempotency-store-unavailable``; with ``fail_open=True`` the middleware
  then **ran the handler a second time** for the same request, without idempotency. Spec §2.9: an exception is
  rolled back and re-raised; the fail-open escape hatch only applies when the store could not decide *before* the
  handler (G4). The same double run followed a rollback that failed after the handler answered 429/503.
- A rollback failing after a release-class answer (429 …): the session is broken and the server rolls back by
  itself, nothing was committed, so the handler's real answer is delivered instead of a 503.
- A client gone before the buffered response was sent made ``send`` raise out of the middleware after the commit;
  spec §2.13 says errors from ``send`` after a disconnect are caught (the record is already committed).

Peer report of the same shape: aws-powertools/powertools-lambda-python #8473 (an error raised inside the utility's
own step reported as a persistence-layer failure).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _idem_asgi import post, wrap

from stalwart import StoreUnavailable
from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, MemoryStore, StoredResponse


class FakeTx:
    def __init__(self, store: TxStore) -> None:
        self.store = store
        self.acquired = True
        self.existing = None
        self.now = 0.0
        self.connection = object()

    async def rollback(self) -> None:
        self.store.rollbacks += 1
        if self.store.fail_rollback:
            raise StoreUnavailable("rollback: connection reset")

    async def complete(self, response: StoredResponse, *, retention: float) -> None:
        self.store.committed.append(response)


class TxStore(MemoryStore):
    """A stand-in for PostgresStore's transactional mode (no server needed)."""

    def __init__(self, *, fail_open_tx: bool = False, fail_rollback: bool = False) -> None:
        super().__init__()
        self.fail_open_tx = fail_open_tx
        self.fail_rollback = fail_rollback
        self.rollbacks = 0
        self.committed: list[StoredResponse] = []

    @contextlib.asynccontextmanager
    async def transaction(
        self, record_id: str, *, fingerprint: bytes, fp_version: int, **limits: float | None
    ) -> AsyncIterator[FakeTx]:
        if self.fail_open_tx:
            raise StoreUnavailable("no connection")
        yield FakeTx(self)


class App:
    def __init__(self, *, raises: BaseException | None = None, status: int = 201) -> None:
        self.raises = raises
        self.status = status
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await receive()
        if self.raises is not None:
            raise self.raises
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"answer"})


async def call(mw: Any, *, client_gone: bool = False) -> list[tuple[int, bytes]]:
    """Every response the middleware started, as (status, body); with ``client_gone`` every send raises."""
    answer = await post(mw, send_fails=OSError("client disconnected") if client_gone else None)
    answers: list[tuple[int, bytes]] = []
    for message in answer.messages:
        if message["type"] == "http.response.start":
            answers.append((message["status"], b""))
        elif message["type"] == "http.response.body":
            answers[-1] = (answers[-1][0], answers[-1][1] + message.get("body", b""))
    return answers


def middleware(app: App, store: TxStore, **config: Any) -> IdempotencyMiddleware:
    return wrap(app, store, config=IdempotencyConfig(transactional=True, **config))


@pytest.mark.parametrize("fail_open", [True, False])
async def test_the_handlers_own_store_error_is_re_raised_and_never_runs_it_again(fail_open: bool) -> None:
    app = App(raises=StoreUnavailable("the handler's own Redis"))
    store = TxStore()
    mw = middleware(app, store, fail_open=fail_open)
    with pytest.raises(StoreUnavailable, match="the handler's own Redis"):
        await call(mw)
    assert app.calls == 1
    assert mw.statistics()["store_unavailable_503"] == 0
    assert mw.statistics()["fail_open_bypasses"] == 0
    assert store.committed == []


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_failed_rollback_after_a_release_answer_delivers_that_answer(fail_open: bool) -> None:
    app = App(status=429)
    store = TxStore(fail_rollback=True)
    mw = middleware(app, store, fail_open=fail_open)
    assert await call(mw) == [(429, b"answer")]
    assert app.calls == 1
    assert store.committed == []


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_transaction_that_cannot_open_is_still_503_or_fail_open(fail_open: bool) -> None:
    app = App()
    mw = middleware(app, TxStore(fail_open_tx=True), fail_open=fail_open)
    answers = await call(mw)
    if fail_open:
        assert answers == [(201, b"answer")]
        assert app.calls == 1
    else:
        assert [status for status, _ in answers] == [503]
        assert app.calls == 0


async def test_a_vanished_client_does_not_make_the_committed_request_raise() -> None:
    app = App()
    store = TxStore()
    await call(middleware(app, store), client_gone=True)
    assert app.calls == 1
    assert [r.status for r in store.committed] == [201]
