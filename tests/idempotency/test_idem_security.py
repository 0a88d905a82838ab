"""Scope isolation and what the store holds (spec §2.4, §2.6): G3, no cross-scope disclosure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from idem_apps import Probe, client, make_app, wrap
from idem_harness import Harness
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser, UnauthenticatedUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stalwart.idempotency import (
    IdempotencyMiddleware,
    Identity,
    MemoryStore,
    SQLiteStore,
    scope_user_resolver,
    state_resolver,
)
from stalwart.idempotency.stores.postgres import PostgresStore
from stalwart.idempotency.stores.redis import RedisStore

KEY = "KEY-supersecret-0042"
EMAIL = "alice@example.com"


async def test_two_users_with_the_same_key_never_share_a_response() -> None:
    probe = Probe()
    async with client(wrap(make_app(probe))) as c:
        a = await c.post("/payments", json={"a": 1}, headers={"idempotency-key": KEY, "x-user": "alice"})
        b = await c.post("/payments", json={"a": 1}, headers={"idempotency-key": KEY, "x-user": "bob"})
        a2 = await c.post("/payments", json={"a": 1}, headers={"idempotency-key": KEY, "x-user": "alice"})
        b2 = await c.post("/payments", json={"a": 1}, headers={"idempotency-key": KEY, "x-user": "bob"})
    assert probe.calls == 2
    assert a.json()["n"] != b.json()["n"]
    assert a2.content == a.content
    assert b2.content == b.content
    # Different bodies in two scopes are not a 422 either: the scopes are independent.


async def test_two_tenants_with_the_same_user_and_key_are_independent() -> None:
    probe = Probe()
    async with client(wrap(make_app(probe))) as c:
        for tenant in ("acme", "globex"):
            r = await c.post(
                "/payments", json={"a": tenant}, headers={"idempotency-key": KEY, "x-user": "u", "x-tenant": tenant}
            )
            assert r.status_code == 201
            assert "idempotent-replayed" not in r.headers
    assert probe.calls == 2


async def test_a_store_dump_holds_no_raw_key_identity_or_credentials(tmp_path: Path) -> None:
    async def handler(request: Request) -> Response:
        return JSONResponse({"ok": True}, status_code=201)

    path = tmp_path / "idem.sqlite3"
    store = SQLiteStore(path)
    mw = wrap(make_app(Probe(), handler), store)
    request_headers = {
        "idempotency-key": KEY,
        "x-user": EMAIL,
        "x-tenant": "tenant-acme-corp",
        "authorization": "Bearer tok-very-secret",
    }
    async with client(mw) as c:
        await c.post("/payments", json={"card": "4111111111111111"}, headers=request_headers)
        await c.post("/payments", json={"card": "4111111111111111"}, headers=request_headers)
    await store.aclose()
    dump = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (KEY, EMAIL, "tenant-acme-corp", "tok-very-secret", "4111111111111111"):
        assert secret.encode() not in dump, secret
    assert b'{"ok":true}' in dump  # the response is there, so the dump is not empty


async def _dump(harness: Harness) -> bytes:
    """Everything a store holds, as raw bytes (what an operator, a backup or an attacker with the dump sees)."""
    store: Any = harness.store
    if harness.kind == "memory":
        return repr(list(store._records.values())).encode()
    if harness.kind == "sqlite":
        await store.aclose()
        return b"".join(p.read_bytes() for p in Path(store.path).parent.iterdir())
    if harness.kind == "redis":
        client = store.client
        out = []
        async for key in client.scan_iter(match=f"{{{store.prefix}*"):
            out.append(key)
            kind = await client.type(key)
            if kind == b"hash":
                out.extend(x for pair in (await client.hgetall(key)).items() for x in pair)
            elif kind == b"zset":
                out.extend(m for m, _ in await client.zrange(key, 0, -1, withscores=True))
            else:
                out.append(await client.get(key) or b"")
        return b"\n".join(out)
    async with store.pool.connection() as conn:
        rows = await (await conn.execute(f'SELECT * FROM "{store.schema}"."{store.table}"')).fetchall()
    return repr(rows).encode()


async def test_no_store_holds_raw_keys_identities_or_request_data(harness: Harness) -> None:
    async def handler(request: Request) -> Response:
        return JSONResponse({"ok": True}, status_code=201)

    mw = wrap(make_app(Probe(), handler), harness.store)
    request_headers = {"idempotency-key": KEY, "x-user": EMAIL, "x-tenant": "tenant-acme-corp"}
    async with client(mw) as c:
        for _ in range(2):
            await c.post("/payments", json={"card": "4111111111111111"}, headers=request_headers)
    dump = await _dump(harness)
    assert b'"ok":true' in dump  # the stored response is there, so the dump is not empty
    for secret in (KEY, EMAIL, "tenant-acme-corp", "4111111111111111"):
        assert secret.encode() not in dump, (harness.kind, secret)


class TokenBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        token = conn.headers.get("authorization", "")
        if token == "Bearer valid-alice":
            return AuthCredentials(["authenticated"]), SimpleUser("alice")
        return None


async def test_scope_user_resolver_reads_only_authenticated_users() -> None:
    runs: list[str] = []

    async def endpoint(request: Request) -> Response:
        runs.append(request.user.display_name)
        return JSONResponse({"user": request.user.display_name}, status_code=201)

    store = SQLiteStore(":memory:")
    app = Starlette(
        routes=[Route("/payments", endpoint, methods=["POST"])],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=TokenBackend()),  # authentication first
            Middleware(IdempotencyMiddleware, store=store, resolver=scope_user_resolver(tenant="t")),
        ],
    )
    async with client(app) as c:
        ok = await c.post("/payments", headers={"idempotency-key": KEY, "authorization": "Bearer valid-alice"})
        forged = await c.post(
            "/payments", headers={"idempotency-key": KEY, "authorization": "Bearer forged", "x-user": "alice"}
        )
    assert ok.status_code == 201
    assert forged.status_code == 401  # an unauthenticated request never sees alice's replay
    assert runs == ["alice"]
    await store.aclose()


def test_resolvers() -> None:
    resolve = scope_user_resolver()
    assert resolve({"user": UnauthenticatedUser()}) is None
    assert resolve({"user": SimpleUser("bob")}) == Identity("bob", "default")
    assert resolve({}) is None
    by_state = state_resolver()
    assert by_state({"state": {"principal": "p1", "tenant": "t1"}}) == Identity("p1", "t1")
    assert by_state({"state": {"principal": "p1"}}) == Identity("p1", "default")
    assert by_state({"state": {"principal": ""}}) is None
    assert by_state({}) is None


async def test_sqlite_default_secret_is_used_when_none_is_given(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    probe = Probe()
    mw = wrap(make_app(probe), store, secret=None)
    async with client(mw) as c:
        await c.post("/payments", json={}, headers={"idempotency-key": "k", "x-user": "u"})
        r = await c.post("/payments", json={}, headers={"idempotency-key": "k", "x-user": "u"})
    assert r.headers["idempotent-replayed"] == "true"
    await store.aclose()


def test_durable_stores_refuse_to_start_without_a_secret() -> None:
    # Redis and PostgreSQL keep no secret: a missing one is a ValueError at construction, not a 503 per request.
    redis_store = RedisStore.from_url("redis://127.0.0.1:1/0")  # never contacted
    postgres_store = PostgresStore.from_url("postgresql://nobody@127.0.0.1:1/none")  # never opened
    for store in (redis_store, postgres_store):
        assert store.requires_secret is True
        with pytest.raises(ValueError, match=rf"secret is required with {type(store).__name__}"):
            wrap(make_app(Probe()), store, secret=None)
        assert wrap(make_app(Probe()), store, secret=b"k" * 32).store is store
    for store in (MemoryStore(), SQLiteStore(":memory:")):  # these provide a secret themselves
        assert not getattr(store, "requires_secret", False)
        assert wrap(make_app(Probe()), store, secret=None).store is store


async def test_a_store_without_a_secret_that_does_not_say_so_answers_503() -> None:
    # A third-party store whose default_secret() is None and that does not set requires_secret: fail closed.
    class NoSecretStore(MemoryStore):
        async def default_secret(self) -> None:  # type: ignore[override]
            return None

    probe = Probe()
    async with client(wrap(make_app(probe), NoSecretStore(), secret=None)) as c:
        r = await c.post("/payments", json={}, headers={"idempotency-key": "k", "x-user": "u"})
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert probe.calls == 0
