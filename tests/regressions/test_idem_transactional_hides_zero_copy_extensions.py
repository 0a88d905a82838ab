"""Regression: transactional mode left the ``http.response.pathsend`` / ``zerocopy`` extensions visible to the app.

Standard mode hides them, because the capture needs every body byte to pass through ``send``; transactional mode did
not. Under a server offering ``http.response.pathsend`` (Granian, for one), Starlette's ``FileResponse`` answers with
``http.response.start`` and ``http.response.pathsend`` and no ``http.response.body`` at all. The buffer never saw a
final body message, classified the request as an unfinished response (an exception), **rolled the handler's writes
back**, and then forwarded the buffered messages anyway: the client received a 200 with the file for a request
whose transaction was rolled back, and a retry ran it again. That breaks G5 (the answer and the writes commit
together). The same class as the capture gaps reported against BaseHTTPMiddleware-based idempotency (Kludex/starlette
#1438: responses not passing through the wrapper's ``send``). Both modes now hide these extensions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from _idem_asgi import post, wrap

from stalwart.idempotency import IdempotencyConfig, MemoryStore, StoredResponse

EXTENSIONS = {"http.response.pathsend": {}, "http.response.zerocopy": {}, "http.response.trailers": {}, "tls": {}}


class FakeTx:
    def __init__(self, store: TxStore) -> None:
        self.store = store
        self.acquired = True
        self.existing = None
        self.now = 0.0
        self.connection = object()

    async def rollback(self) -> None:
        self.store.rolled_back += 1

    async def complete(self, response: StoredResponse, *, retention: float) -> None:
        self.store.committed.append(response)


class TxStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.rolled_back = 0
        self.committed: list[StoredResponse] = []

    @contextlib.asynccontextmanager
    async def transaction(
        self, record_id: str, *, fingerprint: bytes, fp_version: int, **limits: float | None
    ) -> AsyncIterator[FakeTx]:
        yield FakeTx(self)


async def file_response(scope: Any, receive: Any, send: Any) -> None:
    """What Starlette's FileResponse does: pathsend when the server offers it, body messages otherwise."""
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    if "http.response.pathsend" in scope.get("extensions", {}):
        await send({"type": "http.response.pathsend", "path": "/srv/receipt.txt"})
    else:
        await send({"type": "http.response.body", "body": b"receipt"})


async def test_transactional_mode_hides_pathsend_and_commits_the_file_response() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope.get("extensions", {})))
        await file_response(scope, receive, send)

    store = TxStore()
    mw = wrap(app, store, config=IdempotencyConfig(transactional=True))
    answer = await post(mw, path="/receipts", scope={"extensions": dict(EXTENSIONS)})
    scope, messages = answer.scope, answer.messages
    assert seen == [{"tls": {}}]
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert [(r.status, r.body) for r in store.committed] == [(200, b"receipt")]
    assert store.rolled_back == 0
    assert scope["extensions"] == EXTENSIONS  # the server's scope is left alone
