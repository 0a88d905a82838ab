"""Regression: a scope resolver that fails, in any way, answers 401 and never reaches the store (§2.4, §2.8 step 3).

"Run the resolver. If it fails: 401." Two ways of failing escaped that rule:

- an ``Identity`` whose fields are not strings (``Identity("alice", None)`` from ``scope.get("tenant")``, an integer
  user id, a bytes header value) went on to the scope HMAC, which raised ``AttributeError`` out of the middleware: the
  server answered 500;
- a resolver that raised, or returned something other than an ``Identity`` or None, was taken for "no principal", so
  on a route with ``allow_anonymous=True`` the request was served in the shared anonymous scope.

Now ``Identity`` refuses non-string fields (``TypeError`` naming the field), and the middleware answers 401
``idempotency-principal-required`` for any resolver failure — an exception, a result that is not an ``Identity`` or
None, an ``Identity`` with invalid fields (built around its check) — on every route, and logs a bad result once.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _idem_asgi import CountingApp, FaultyStore, post, wrap

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, Identity

UUID_KEY = b"0b6a4c4e-6d2c-4c39-9f55-1f9a2f3a7b10"


def _forged(principal: Any, tenant: Any) -> Identity:
    """An Identity whose fields bypassed its own check (as a subclass or ``object.__setattr__`` could produce)."""
    identity = Identity("placeholder")
    object.__setattr__(identity, "principal", principal)
    object.__setattr__(identity, "tenant", tenant)
    return identity


def _raising(scope: Any) -> Identity:
    raise RuntimeError("token service down")


BAD_RESULTS: dict[str, Any] = {
    "raises": _raising,
    "tenant None": lambda scope: _forged("alice", None),
    "int principal": lambda scope: _forged(42, "default"),
    "bytes principal": lambda scope: _forged(b"alice", "default"),
    "bytes tenant": lambda scope: _forged("alice", b"acme"),
    "a string": lambda scope: "alice",
    "a dict": lambda scope: {"principal": "alice"},
}


def answering_ok() -> CountingApp:
    return CountingApp(body=b"ok")


async def call(mw: IdempotencyMiddleware, key: bytes = UUID_KEY) -> tuple[int | None, bytes]:
    answer = await post(mw, key=key)
    return answer.status, answer.body


@pytest.mark.parametrize("anonymous", [False, True], ids=["authenticated-only", "allow_anonymous"])
@pytest.mark.parametrize("kind", list(BAD_RESULTS))
async def test_a_failing_resolver_answers_401(kind: str, anonymous: bool) -> None:
    app, store = answering_ok(), FaultyStore()
    mw = wrap(
        app, store, resolver=BAD_RESULTS[kind], config=IdempotencyConfig(allow_anonymous=anonymous), purge_interval=None
    )
    status, body = await call(mw)
    assert status == 401
    assert b"idempotency-principal-required" in body
    assert app.calls == 0
    assert store.calls["claim"] == 0


async def test_a_bad_resolver_result_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    mw = wrap(answering_ok(), resolver=BAD_RESULTS["tenant None"], purge_interval=None)
    with caplog.at_level(logging.DEBUG, logger="stalwart"):
        for _ in range(3):
            assert (await call(mw))[0] == 401
    logged = [r for r in caplog.records if "resolver" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert "tenant" in logged[0].getMessage()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("alice", None), "tenant"),
        ((42,), "principal"),
        ((b"alice",), "principal"),
        (("alice", b"acme"), "tenant"),
    ],
)
def test_identity_refuses_fields_that_are_not_strings(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(TypeError, match=field):
        Identity(*args)


def test_identity_still_accepts_what_it_documents() -> None:
    assert Identity(None).principal is None
    assert Identity("", "anonymous").tenant == "anonymous"
    assert Identity("alice", "acme") == Identity("alice", "acme")


async def test_no_principal_is_still_anonymous_where_allowed() -> None:
    app = answering_ok()
    for result in (None, Identity(None), Identity("")):
        mw = wrap(
            app, resolver=lambda scope, r=result: r, config=IdempotencyConfig(allow_anonymous=True), purge_interval=None
        )
        assert (await call(mw))[0] == 201
    assert app.calls == 3
