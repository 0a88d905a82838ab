"""Regression: a ``raw_path`` carrying the query string put the query into the fingerprint a second time.

The fingerprint hashes ``scope["raw_path"]`` as the path and ``scope["query_string"]`` as the query (spec §2.5), and
``exclude_query`` / ``query_canonical`` act on the latter only. The ASGI spec now says ``raw_path`` excludes the query
(django/asgiref PR #402), but that was a clarification: httpx's ``ASGITransport`` before 0.28 (supported here,
``httpx>=0.27``) sent the whole request target (encode/httpx issue #2810, PR #2999), and other servers and test
clients followed either reading. With such a ``raw_path`` the query, in its original order, was hashed as part of the
path: ``exclude_query`` and ``query_canonical`` stopped working (a retry with the parameters in another order, or
another value of an ignored query, got 422 instead of its replay), and ``scope_by_route`` put the query into the
scope. The path used for the fingerprint and the route scope is now ``raw_path`` cut at its first ``?``; a literal
``?`` cannot occur in a path component (it is percent-encoded there), so nothing else changes.
"""

from __future__ import annotations

from typing import Any

import pytest
from _idem_asgi import SERVER_SCOPE, CountingApp, post, wrap

from stalwart.idempotency import FingerprintSpec, IdempotencyConfig, IdempotencyMiddleware


def charge() -> CountingApp:
    """Reads the whole body, answers 201 ``charge <n>`` (text/plain) on its n-th run."""
    return CountingApp(body=lambda run: f"charge {run}".encode(), headers=[(b"content-type", b"text/plain")])


async def call(mw: IdempotencyMiddleware, path: str, query: bytes, *, full_target: bool) -> tuple[int | None, bytes]:
    """POST ``path?query``; ``full_target``: ``raw_path`` is the whole request target, as httpx < 0.28 sent it."""
    raw_path = path.encode() + (b"?" + query if full_target and query else b"")
    answer = await post(
        mw,
        key=b"key-1",
        path=path,
        raw_path=raw_path,
        query_string=query,
        headers=[(b"content-type", b"application/json")],
        scope=SERVER_SCOPE,
    )
    return answer.status, answer.body


def middleware(app: CountingApp, **config: Any) -> IdempotencyMiddleware:
    return wrap(app, config=IdempotencyConfig(**config), purge_interval=None)


@pytest.mark.parametrize("full_target", [False, True], ids=["raw_path-without-query", "raw_path-with-query"])
async def test_exclude_query_ignores_the_query_whatever_raw_path_holds(full_target: bool) -> None:
    app = charge()
    mw = middleware(app, fingerprint=FingerprintSpec(exclude_query=True))
    assert await call(mw, "/payments", b"trace=1", full_target=full_target) == (201, b"charge 1")
    assert await call(mw, "/payments", b"trace=2", full_target=full_target) == (201, b"charge 1")  # the replay
    assert app.calls == 1


@pytest.mark.parametrize("full_target", [False, True], ids=["raw_path-without-query", "raw_path-with-query"])
async def test_query_canonical_ignores_the_parameter_order_whatever_raw_path_holds(full_target: bool) -> None:
    app = charge()
    mw = middleware(app, fingerprint=FingerprintSpec(query_canonical=True))
    assert await call(mw, "/payments", b"a=1&b=2", full_target=full_target) == (201, b"charge 1")
    assert await call(mw, "/payments", b"b=2&a=1", full_target=full_target) == (201, b"charge 1")
    status, _ = await call(mw, "/payments", b"a=1&b=3", full_target=full_target)
    assert status == 422  # another query is still another request
    assert app.calls == 1


async def test_the_query_counts_once_in_the_default_fingerprint() -> None:
    # Both readings of raw_path give the same fingerprint: a retry through a client that sends the whole target
    # replays a request first made through one that does not.
    app = charge()
    mw = middleware(app)
    assert await call(mw, "/payments", b"a=1", full_target=False) == (201, b"charge 1")
    assert await call(mw, "/payments", b"a=1", full_target=True) == (201, b"charge 1")
    status, _ = await call(mw, "/payments", b"a=2", full_target=True)
    assert status == 422
    assert app.calls == 1


async def test_scope_by_route_scopes_by_the_path_not_the_query() -> None:
    app = charge()
    mw = middleware(app, scope_by_route=True, fingerprint=FingerprintSpec(exclude_query=True))
    assert await call(mw, "/payments", b"trace=1", full_target=True) == (201, b"charge 1")
    assert await call(mw, "/payments", b"trace=2", full_target=True) == (201, b"charge 1")
    assert app.calls == 1
