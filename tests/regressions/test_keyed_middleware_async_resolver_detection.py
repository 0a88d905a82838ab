"""``KeyedBulkheadMiddleware``: an async resolver that ``inspect.iscoroutinefunction`` misses keyed each request by a
coroutine object.

The middleware detected an async resolver with ``inspect.iscoroutinefunction`` only, so an async resolver behind a
plain decorator (caching, tracing), a ``lambda scope: lookup(scope)`` or any sync callable returning an awaitable was
taken for sync: its coroutine was never awaited (a "never awaited" warning) and, coroutines being hashable, became
the request's key: every request got a compartment of its own and the per-key limit never applied, which is the
one thing the middleware is for. Detection now uses the policies' ``is_async_callable``, and an awaitable returned
by a resolver taken for sync is awaited.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from stalwart.asgi import KeyedBulkheadMiddleware


async def lookup(scope: Any) -> str:
    await asyncio.sleep(0)
    return "alice"


def plain_decorator(fn: Callable[[Any], Awaitable[str]]) -> Callable[[Any], Awaitable[str]]:
    def wrapper(scope: Any) -> Awaitable[str]:  # no functools.wraps: nothing says it is async
        return fn(scope)

    return wrapper


class Resolver:
    def __call__(self, scope: Any) -> Awaitable[str]:
        return lookup(scope)


RESOLVERS = [
    pytest.param(lambda scope: lookup(scope), id="lambda"),
    pytest.param(plain_decorator(lookup), id="plain-decorator"),
    pytest.param(Resolver(), id="object-returning-a-coroutine"),
    pytest.param(lookup, id="async-def"),
]


@pytest.mark.parametrize("resolver", RESOLVERS)
async def test_requests_of_one_user_share_its_compartment(resolver: Callable[[Any], Any]) -> None:
    gate = asyncio.Event()
    statuses: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = KeyedBulkheadMiddleware(app, resolver=resolver, max_per_key=2, max_concurrent=10)

    async def request() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await middleware({"type": "http", "headers": [], "path": "/"}, receive, send)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tasks = [asyncio.create_task(request()) for _ in range(3)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert statuses == [503]  # the third request of the same user
        assert middleware.bulkhead.active_for("alice") == 2
        gate.set()
        await asyncio.gather(*tasks)
        gc.collect()
    assert sorted(statuses) == [200, 200, 503]
    assert middleware.bulkhead.statistics().active == 0
