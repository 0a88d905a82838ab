"""Shared helpers of the stalwart.httpx tests: a scripted mock upstream and one driver for both transport flavours;
:class:`LoopbackSide`, a client over either transport and a real connection pool, for the loopback-server tests.

(A plain module, not a conftest: ``tests/httpx`` has no ``__init__.py``, so its modules have unique names.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpx

from stalwart._backoff import Backoff, Jitter
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock

NO_JITTER = Backoff.exponential(initial=1.0, multiplier=2.0, max_delay=60.0, jitter=Jitter.NONE)
"""Exact delays 1, 2, 4, ... so tests can assert the schedule."""

LOOPBACK = ResilienceConfig(backoff=NO_JITTER, timeout=5.0)
"""The loopback tests' default config: exact backoff delays (on the fake clock), a 5 s per-attempt timeout."""

Step = int | tuple[int, dict[str, str]] | httpx.Response | BaseException | type[BaseException]


class TrackedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that is not read in advance (as a network response's is not) and records its closing."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield self.body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def _response(status: int, headers: dict[str, str] | None, body: bytes) -> httpx.Response:
    return httpx.Response(status, headers=headers, stream=TrackedStream(body))


class Upstream:
    """A scripted upstream for ``httpx.MockTransport``: each call consumes the next step (the last one repeats).

    A step is a status code, ``(status, headers)``, a ready ``httpx.Response``, or an exception (instance or class)
    to raise. Every request is recorded with its body and attempt header; every response handed out is kept, so a
    test can check which were closed.
    """

    def __init__(self, steps: Iterable[Step]) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.attempts: list[str | None] = []
        self.headers: list[dict[str, str]] = []
        self.timeouts: list[dict[str, Any]] = []
        self.responses: list[httpx.Response] = []
        self.closed_before_next: list[bool] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _next(self, request: httpx.Request) -> httpx.Response:
        if self.responses:
            self.closed_before_next.append(self.responses[-1].is_closed)
        self.requests.append(request)
        self.attempts.append(request.headers.get("stalwart-attempt"))
        self.headers.append(dict(request.headers))
        self.timeouts.append(dict(request.extensions.get("timeout") or {}))
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, BaseException) or (isinstance(step, type) and issubclass(step, BaseException)):
            exc = step if isinstance(step, BaseException) else step("scripted failure")
            raise exc
        if isinstance(step, httpx.Response):
            response = step
        elif isinstance(step, tuple):
            response = _response(step[0], step[1], f"attempt {len(self.requests)}".encode())
        else:
            response = _response(step, None, f"attempt {len(self.requests)}".encode())
        self.responses.append(response)
        return response

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Sync handler (reads the body first)."""
        self.bodies.append(request.read())
        return self._next(request)

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        """Async handler (reads the body first)."""
        self.bodies.append(await request.aread())
        return self._next(request)


class Harness:
    """One transport (``mode`` "async" or "sync") over an :class:`Upstream`, with a fake clock and a private
    registry, and a client to send requests with."""

    def __init__(
        self,
        mode: str,
        steps: Iterable[Step] = (200,),
        *,
        config: ResilienceConfig | None = None,
        fallback: Callable[..., Any] | None = None,
        inner: Any = None,
        **kwargs: Any,
    ) -> None:
        self.mode = mode
        self.upstream = Upstream(steps)
        self.clock = FakeClock()
        self.registry = Registry()
        self.config = config if config is not None else ResilienceConfig(backoff=NO_JITTER)
        if mode == "async":
            mock = inner if inner is not None else httpx.MockTransport(self.upstream.ahandler)
            self.transport: Any = AsyncResilientTransport(
                mock, config=self.config, registry=self.registry, clock=self.clock, fallback=fallback, **kwargs
            )
            self.client: Any = httpx.AsyncClient(transport=self.transport)
        else:
            mock = inner if inner is not None else httpx.MockTransport(self.upstream.handler)
            self.transport = ResilientTransport(
                mock, config=self.config, registry=self.registry, clock=self.clock, fallback=fallback, **kwargs
            )
            self.client = httpx.Client(transport=self.transport)

    async def request(self, method: str = "GET", url: str = "https://api.example.com/items", **kwargs: Any) -> Any:
        """Send through an httpx client (the body is read, the response closed)."""
        if self.mode == "async":
            return await self.client.request(method, url, **kwargs)
        return self.client.request(method, url, **kwargs)

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Call the transport directly (the response is returned as the transport left it)."""
        if self.mode == "async":
            response: httpx.Response = await self.transport.handle_async_request(request)
        else:
            response = self.transport.handle_request(request)
        return response

    def breaker(self, origin: str = "http:https://api.example.com:443") -> Any:
        return self.registry.get(origin)

    def bulkhead(self, origin: str = "http:https://api.example.com:443") -> Any:
        return self.registry.get_bulkhead(origin)


class GatedOneSlot:
    """An ``AsyncResilientTransport`` with a one-slot bulkhead over an upstream that holds its second request until
    ``gate`` is set (``entered`` is set once it is held); the first request, sent by :meth:`create`, creates the
    transport's watchdog, so later requests take the lean first attempt."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0
        self.transport = AsyncResilientTransport(
            httpx.MockTransport(self._upstream),
            config=ResilienceConfig(max_concurrent=1),
            registry=Registry(),
            clock=FakeClock(),
        )

    async def _upstream(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 2:
            self.entered.set()
            await self.gate.wait()
        return httpx.Response(200)

    @classmethod
    async def create(cls, url: str) -> GatedOneSlot:
        gated = cls()
        await gated.transport.handle_async_request(httpx.Request("GET", url))  # creates the watchdog
        return gated


class LoopbackSide:
    """One flavour (``mode`` "async" or "sync") of client over the resilient transport and a real connection pool,
    with a fake clock for the backoff sleeps and a private registry; ``kwargs`` go to the transport. The sync client
    runs in a worker thread, so the event loop stays free."""

    def __init__(self, mode: str, config: ResilienceConfig = LOOPBACK, **kwargs: Any) -> None:
        self.mode = mode
        self.clock = FakeClock()
        self.registry = Registry()
        options: dict[str, Any] = {"config": config, "registry": self.registry, "clock": self.clock, **kwargs}
        if mode == "async":
            self.transport: Any = AsyncResilientTransport(**options)
            self.client: Any = httpx.AsyncClient(transport=self.transport)
        else:
            self.transport = ResilientTransport(**options)
            self.client = httpx.Client(transport=self.transport)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.mode == "async":
            response: httpx.Response = await self.client.request(method, url, **kwargs)
        else:
            response = await asyncio.to_thread(self.client.request, method, url, **kwargs)
        return response

    async def close(self) -> None:
        if self.mode == "async":
            await self.client.aclose()
        else:
            self.client.close()
