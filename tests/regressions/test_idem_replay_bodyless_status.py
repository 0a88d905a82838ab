"""Regression: the replay of a stored 204 (or 304) response carried ``Content-Length: 0``, a header the original
did not have and one that RFC 9110 §8.6 forbids on a 204 ("A server MUST NOT send a Content-Length header field in
any response with a status code of 1xx or 204"; on a 304 it must state the length of the 200 it stands for, not 0).

The replay recomputed ``content-length`` from the stored body for every status, so G2 (the same header pairs as the
original, minus regenerated or denied ones) failed for exactly the statuses peer middlewares were caught
mangling (rajadilipkolli/my-spring-boot-experiments PR #2629 and fullstackhero/docs PR #240: "204 stays 204"). A
replay now adds ``content-length`` only for statuses that carry content.
"""

from __future__ import annotations

from typing import Any

import pytest
from _idem_asgi import post, wrap


def app_answering(status: int, headers: list[tuple[bytes, bytes]]) -> Any:
    calls = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        await receive()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    app.calls = calls  # type: ignore[attr-defined]
    return app


async def call(mw: Any) -> tuple[int | None, list[tuple[bytes, bytes]], bytes]:
    answer = await post(mw, path="/items")
    return answer.status, answer.raw_headers, answer.body


@pytest.mark.parametrize("status", [204, 304])
async def test_a_bodyless_status_is_replayed_without_a_content_length(status: int) -> None:
    app = app_answering(status, [(b"etag", b'"v1"')])
    mw = wrap(app)
    first = await call(mw)
    replay = await call(mw)
    assert len(app.calls) == 1
    assert first == (status, [(b"etag", b'"v1"')], b"")
    assert replay == (status, [(b"etag", b'"v1"'), (b"idempotent-replayed", b"true")], b"")


async def test_statuses_with_content_still_get_the_recomputed_length() -> None:
    app = app_answering(200, [(b"content-length", b"0")])
    mw = wrap(app)
    await call(mw)
    status, headers, body = await call(mw)
    assert (status, body) == (200, b"")
    assert headers == [(b"content-length", b"0"), (b"idempotent-replayed", b"true")]
