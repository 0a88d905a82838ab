"""Regression: async user callbacks of the idempotency package that ``inspect.iscoroutinefunction`` misses.

``IdempotencyMiddleware`` told an async resolver from a sync one with ``inspect.iscoroutinefunction``. A resolver
behind a plain (``functools.wraps``) decorator, a lambda returning a coroutine, or a ``functools.partial`` of an
object whose ``__call__`` is async was taken for sync: its never-awaited coroutine was taken for the identity, found
not to be an ``Identity``, and every keyed request got 401. The key checks were worse: ``key_validator`` and
``anonymous_key_validator`` were called as sync, and the coroutine an async one returns is truthy, so *every* key
passed the format check (an anonymous route then accepted guessable keys in its shared scope). An async
``FingerprintSpec.fields`` callable silently hashed the whole body instead of the selected fields, and ``@idempotent``
wrapped an async endpoint behind a plain decorator in a sync wrapper (Starlette then ran it in a thread and got a
coroutine for a response).

Detection now uses ``is_async_callable`` (as ``KeyedBulkheadMiddleware`` does since commit 2447a47) and an awaitable
returned by a callback taken for sync is awaited; ``fields``, which the synchronous fingerprint cannot await, refuses
an async callable at construction.
"""

from __future__ import annotations

import functools
import gc
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stalwart.idempotency import (
    FingerprintSpec,
    IdempotencyConfig,
    IdempotencyMiddleware,
    Identity,
    MemoryStore,
    compute_fingerprint,
    idempotent,
)

SECRET = b"s" * 32


def traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A pass-through decorator as tracing and logging libraries write them (sync wrapper, coroutine returned)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


async def _alice(scope: Any) -> Identity:
    return Identity("alice")


class AsyncResolver:
    async def __call__(self, scope: Any) -> Identity:
        return Identity("alice")


RESOLVERS: dict[str, Any] = {
    "decorated": traced(_alice),
    "lambda": lambda scope: _alice(scope),
    "partial_of_async_object": functools.partial(AsyncResolver()),
}


def app_with(mw_kwargs: dict[str, Any], runs: list[int]) -> Starlette:
    async def charge(request: Request) -> Response:
        runs.append(1)
        return JSONResponse({"charge": len(runs)}, status_code=201)

    app = Starlette(routes=[Route("/payments", charge, methods=["POST"])])
    app.add_middleware(IdempotencyMiddleware, store=MemoryStore(), secret=SECRET, **mw_kwargs)
    return app


async def post(app: Starlette, key: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post("/payments", json={"amount": 5}, headers={"idempotency-key": key})


@pytest.mark.parametrize("kind", sorted(RESOLVERS))
async def test_an_async_resolver_not_declared_async_is_awaited(kind: str) -> None:
    runs: list[int] = []
    app = app_with({"resolver": RESOLVERS[kind]}, runs)
    first = await post(app, "key-1")
    assert first.status_code == 201, first.text
    again = await post(app, "key-1")
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert runs == [1]


async def _refuse(key: str) -> bool:
    return False


class AsyncRefuse:
    async def __call__(self, key: str) -> bool:
        return False


VALIDATORS: dict[str, Any] = {
    "async_def": _refuse,
    "decorated": traced(_refuse),
    "lambda": lambda key: _refuse(key),
    "async_object": AsyncRefuse(),
}


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
async def test_an_async_key_validator_is_awaited_not_taken_for_true(kind: str) -> None:
    runs: list[int] = []
    config = IdempotencyConfig(key_validator=VALIDATORS[kind])
    app = app_with({"resolver": lambda scope: Identity("alice"), "config": config}, runs)
    response = await post(app, "key-1")
    assert response.status_code == 400
    assert response.json()["type"].endswith("idempotency-key-invalid")
    assert runs == []


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
async def test_an_async_anonymous_key_validator_is_awaited_not_taken_for_true(kind: str) -> None:
    runs: list[int] = []
    config = IdempotencyConfig(allow_anonymous=True, anonymous_key_validator=VALIDATORS[kind])
    app = app_with({"resolver": lambda scope: None, "config": config}, runs)
    response = await post(app, str(uuid.uuid4()))
    assert response.status_code == 400
    assert runs == []


async def test_an_async_key_validator_that_accepts_lets_the_request_run() -> None:
    async def accept(key: str) -> bool:
        return True

    runs: list[int] = []
    config = IdempotencyConfig(key_validator=traced(accept))
    app = app_with({"resolver": lambda scope: Identity("alice"), "config": config}, runs)
    assert (await post(app, "key-1")).status_code == 201
    assert runs == [1]


async def test_an_async_fields_callable_is_refused_at_construction() -> None:
    async def amount(document: Any) -> Any:
        return document["amount"]

    for fields in (amount, traced(amount)):
        with pytest.raises(ValueError, match="fields"):
            FingerprintSpec(fields=fields)


def test_a_fields_callable_returning_an_awaitable_hashes_the_raw_body_without_leaking_a_coroutine() -> None:
    async def amount(document: Any) -> Any:
        return document["amount"]

    spec = FingerprintSpec(fields=lambda document: amount(document))  # cannot be told apart before the call
    headers = [(b"content-type", b"application/json")]

    def fp(body: bytes, spec: FingerprintSpec = spec) -> bytes:
        return compute_fingerprint(spec, method="POST", raw_path=b"/p", query=b"", headers=headers, body=body)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert fp(b'{"amount": 5, "note": "a"}') == fp(b'{"amount": 5, "note": "a"}', FingerprintSpec())
        gc.collect()
    assert not [w for w in seen if "never awaited" in str(w.message)]


async def test_idempotent_keeps_an_async_endpoint_behind_a_plain_decorator_async() -> None:
    runs: list[int] = []

    @idempotent(required=True)
    @traced
    async def charge(request: Request) -> Response:
        runs.append(1)
        return JSONResponse({"charge": len(runs)}, status_code=201)

    app = Starlette(routes=[Route("/payments", charge, methods=["POST"])])
    app.add_middleware(
        IdempotencyMiddleware, store=MemoryStore(), secret=SECRET, resolver=lambda scope: Identity("alice")
    )
    response = await post(app, "key-1")
    assert response.status_code == 201
    assert runs == [1]
