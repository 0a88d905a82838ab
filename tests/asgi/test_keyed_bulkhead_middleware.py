"""KeyedBulkheadMiddleware: Starlette apps driven through httpx's ASGITransport, concurrent requests held on events
(no timing). The identity comes from a stub authentication middleware, as it would in production."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from stalwart._keyed_bulkhead import KeyedBulkhead
from stalwart.asgi import KeyedBulkheadMiddleware


@dataclass(frozen=True)
class Identity:
    principal: str
    tenant: str = "default"


def authenticated(app: Any) -> Any:
    """A stub auth layer: the verified user goes into scope["state"] (here read from a test header)."""

    async def auth(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            user = headers.get(b"x-test-user")
            scope.setdefault("state", {})["user"] = None if user is None else user.decode()
        await app(scope, receive, send)

    return auth


def user_of(scope: Any) -> str | None:
    user: str | None = scope["state"]["user"]
    return user


class Held:
    """An app whose requests wait on one gate; counts what it ran."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.running: dict[str | None, int] = {}

    async def endpoint(self, request: Request) -> Response:
        user = request.scope["state"]["user"]
        self.running[user] = self.running.get(user, 0) + 1
        await self.gate.wait()
        return PlainTextResponse("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/", self.endpoint)])


def client(app: Any, **options: Any) -> httpx.AsyncClient:
    middleware = KeyedBulkheadMiddleware(app, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=authenticated(middleware)), base_url="http://t")


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_the_flooding_user_gets_503_beyond_its_limit_while_the_others_are_admitted() -> None:
    held = Held()
    async with client(held.app(), resolver=user_of, max_per_key=3, max_concurrent=50, retry_after=2) as http:
        flood = [asyncio.create_task(http.get("/", headers={"x-test-user": "noisy"})) for _ in range(20)]
        await settle()
        others = [asyncio.create_task(http.get("/", headers={"x-test-user": f"user{i}"})) for i in range(10)]
        await settle()
        assert held.running == {"noisy": 3, **{f"user{i}": 1 for i in range(10)}}
        rejected = [t.result() for t in flood if t.done()]
        assert len(rejected) == 17
        for response in rejected:
            assert response.status_code == 503
            assert response.headers["retry-after"] == "2"
            assert response.headers["content-type"] == "application/problem+json"
            assert "this client" in response.json()["detail"]
        held.gate.set()
        responses = await asyncio.gather(*flood, *others)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 13
    assert statuses.count(503) == 17


async def test_the_shared_limit_answers_503_too() -> None:
    held = Held()
    bulkhead = KeyedBulkhead("users", max_per_key=2, max_concurrent=2, max_queue=0)
    async with client(held.app(), resolver=user_of, bulkhead=bulkhead) as http:
        running = [asyncio.create_task(http.get("/", headers={"x-test-user": u})) for u in ("a", "b")]
        await settle()
        response = await http.get("/", headers={"x-test-user": "c"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "capacity" in response.json()["detail"]
        held.gate.set()
        assert [r.status_code for r in await asyncio.gather(*running)] == [200, 200]
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued) == (0, 0)


async def test_unresolved_requests_share_the_anonymous_compartment_or_only_the_shared_limit() -> None:
    held = Held()
    async with client(held.app(), resolver=user_of, max_per_key=1, max_concurrent=10) as http:
        first = asyncio.create_task(http.get("/"))
        await settle()
        assert (await http.get("/")).status_code == 503  # both anonymous: one compartment
        held.gate.set()
        assert (await first).status_code == 200

    held = Held()
    async with client(
        held.app(), resolver=user_of, max_per_key=1, max_concurrent=2, max_queue=0, unresolved=None
    ) as http:
        running = [asyncio.create_task(http.get("/")) for _ in range(2)]
        await settle()
        assert held.running == {None: 2}  # no compartment: only the shared limit
        assert (await http.get("/")).status_code == 503
        held.gate.set()
        assert [r.status_code for r in await asyncio.gather(*running)] == [200, 200]


async def test_async_resolvers_and_identity_keys() -> None:
    held = Held()

    async def resolve(scope: Any) -> Identity | None:
        await asyncio.sleep(0)
        user = scope["state"]["user"]
        return None if user is None else Identity(user, tenant="acme")

    middleware_app = KeyedBulkheadMiddleware(held.app(), resolver=resolve, max_per_key=1)
    transport = httpx.ASGITransport(app=authenticated(middleware_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        first = asyncio.create_task(http.get("/", headers={"x-test-user": "ann"}))
        await settle()
        assert middleware_app.bulkhead.active_for(Identity("ann", "acme")) == 1
        assert (await http.get("/", headers={"x-test-user": "ann"})).status_code == 503
        held.gate.set()
        assert (await first).status_code == 200
    assert middleware_app.bulkhead.active_for(Identity("ann", "acme")) == 0


async def test_a_failing_resolver_is_logged_and_the_request_treated_as_unresolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(scope: Any) -> str:
        raise LookupError("no session store")

    held = Held()
    held.gate.set()
    with caplog.at_level(logging.ERROR, logger="stalwart"):
        async with client(held.app(), resolver=broken) as http:
            assert (await http.get("/")).status_code == 200
    assert "resolver failed" in caplog.text


async def test_a_streaming_response_holds_the_slot_until_it_ends() -> None:
    release = asyncio.Event()
    middleware_app: KeyedBulkheadMiddleware

    async def body() -> AsyncIterator[bytes]:
        yield b"part one, "
        assert middleware_app.bulkhead.active_for("ann") == 1
        await release.wait()
        yield b"part two"

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(body())

    middleware_app = KeyedBulkheadMiddleware(Starlette(routes=[Route("/", endpoint)]), resolver=user_of)
    transport = httpx.ASGITransport(app=authenticated(middleware_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        request = asyncio.create_task(http.get("/", headers={"x-test-user": "ann"}))
        await settle()
        assert middleware_app.bulkhead.active_for("ann") == 1
        release.set()
        assert (await request).text == "part one, part two"
    assert middleware_app.bulkhead.active_for("ann") == 0


async def test_a_cancelled_request_gives_its_slot_back() -> None:
    held = Held()
    middleware_app = KeyedBulkheadMiddleware(held.app(), resolver=user_of, max_per_key=1)
    transport = httpx.ASGITransport(app=authenticated(middleware_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        request = asyncio.create_task(http.get("/", headers={"x-test-user": "ann"}))
        await settle()
        assert middleware_app.bulkhead.active_for("ann") == 1
        request.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await request
        assert middleware_app.bulkhead.active_for("ann") == 0
        assert middleware_app.bulkhead.statistics().active == 0


async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    def resolver(scope: Any) -> str:
        raise AssertionError("not called for lifespan")

    middleware_app = KeyedBulkheadMiddleware(app, resolver=resolver)
    await middleware_app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
    assert "unresolved='anonymous'" in repr(middleware_app)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"resolver": "user"}, TypeError, "resolver"),
        ({"resolver": user_of, "bulkhead": object()}, TypeError, "bulkhead"),
        ({"resolver": user_of, "bulkhead": KeyedBulkhead("x"), "max_per_key": 2}, ValueError, "max_per_key"),
        ({"resolver": user_of, "bulkhead": KeyedBulkhead("x"), "queue_timeout": None}, ValueError, "queue_timeout"),
        ({"resolver": user_of, "retry_after": -1}, ValueError, "retry_after"),
        ({"resolver": user_of, "retry_after": 1.5}, TypeError, "retry_after"),
        ({"resolver": user_of, "max_per_key": 0}, ValueError, "max_per_key"),
        ({"resolver": user_of, "unresolved": ["x"]}, TypeError, "unhashable"),
    ],
)
def test_invalid_configuration(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        KeyedBulkheadMiddleware(Held().app(), **options)
