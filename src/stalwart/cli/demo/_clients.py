"""The two clients the demo compares, and how each classifies a request's end.

* ``plain``: ``httpx.AsyncClient`` with httpx's defaults (5 s timeouts, no retries).
* ``resilient``: the same client over :class:`stalwart.httpx.AsyncResilientTransport`, configured for a
  20-second demo (see :func:`demo_config`), with the transport's ``fallback`` answering whatever the policy cannot
  save (an error, or a final 5xx once the retries are spent) with a default answer.

Both send through a :class:`CountingTransport` placed *under* any policy, so every attempt that leaves the client
is counted the same way on both sides; the retries sent are the attempts beyond the first per request.
"""

from __future__ import annotations

import random
from collections import Counter

import httpx

from stalwart._backoff import Backoff
from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig

from ._summary import Kind
from ._workload import Sender

__all__ = [
    "FALLBACK_HEADER",
    "CountingTransport",
    "classify",
    "demo_config",
    "fallback",
    "plain_client",
    "resilient_client",
    "sender",
    "work_path",
]

FALLBACK_HEADER = "x-stalwart-demo-fallback"
"""Header marking a response produced by the demo's fallback rather than by the upstream."""


def work_path(index: int) -> str:
    """The path of request ``index`` on the demo's upstream."""
    return f"/r/{index}"


class CountingTransport(httpx.AsyncBaseTransport):
    """Pass requests to ``inner`` and count the attempts sent per URL path.

    Attributes:
        attempts: attempts per path (one path per request of the workload).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.attempts: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Count the attempt, then send it."""
        self.attempts[request.url.path] += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()


def _pool(concurrency: int) -> httpx.AsyncHTTPTransport:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncHTTPTransport(limits=limits)


def demo_config(concurrency: int) -> ResilienceConfig:
    """The resilient side's settings, sized for a 20-second demo on loopback.

    * ``timeout=0.25``: a healthy call takes a few milliseconds, so a quarter of a second per attempt is generous
      and cuts the degraded phase's slow answers (0.3-0.9 s) short.
    * ``max_attempts=3`` with exponential backoff from 50 ms, doubling, capped at 200 ms, full jitter (so the
      waits are drawn from 0-50 ms, then 0-100 ms): fast enough for a 20-second run.
    * ``failure_threshold=10``: in the degraded phase about 40 % of attempts fail or time out; a threshold of 5
      would trip on chance runs of failures and answer whole seconds with the fallback while most calls work.
    * ``reset_timeout=1.0``: the breaker probes again after a second, so the recovery is visible within the run.
    * a bulkhead of ``min(10, concurrency)`` calls in flight (about ten times what a healthy upstream needs at
      100 requests per second), where callers wait at most 0.1 s for a slot: when the upstream hangs, no more than
      ten calls hang with it, and the others get the fallback at once.
    * ``read_response=True``: the per-attempt timeout and the bulkhead slot cover the whole exchange.

    Args:
        concurrency: the workload's in-flight cap (``--concurrency``).
    """
    return ResilienceConfig(
        timeout=0.25,
        max_attempts=3,
        backoff=Backoff.exponential(initial=0.05, multiplier=2.0, max_delay=0.2),
        failure_threshold=10,
        reset_timeout=1.0,
        max_concurrent=min(10, concurrency),
        max_queue=concurrency,
        queue_timeout=0.1,
        read_response=True,
    )


def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
    """The resilient side's fallback: a default answer, marked with :data:`FALLBACK_HEADER` (the error's type)."""
    return httpx.Response(200, headers={FALLBACK_HEADER: type(exc).__name__}, json={"fallback": True}, request=request)


def plain_client(
    base_url: str, concurrency: int, *, inner: httpx.AsyncBaseTransport | None = None
) -> tuple[httpx.AsyncClient, CountingTransport]:
    """A plain ``httpx.AsyncClient`` (httpx's default timeouts, no retries) and its attempt counter.

    Args:
        base_url: the upstream.
        concurrency: connections in the pool.
        inner: the transport under the counter (default a connection pool of ``concurrency`` connections).
    """
    counter = CountingTransport(_pool(concurrency) if inner is None else inner)
    return httpx.AsyncClient(base_url=base_url, transport=counter), counter


def resilient_client(
    base_url: str,
    concurrency: int,
    *,
    config: ResilienceConfig,
    registry: Registry,
    seed: int,
    inner: httpx.AsyncBaseTransport | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[httpx.AsyncClient, CountingTransport]:
    """An ``httpx.AsyncClient`` over ``AsyncResilientTransport`` and its attempt counter.

    Args:
        base_url: the upstream.
        concurrency: connections in the pool.
        config: the policy (see :func:`demo_config`).
        registry: where the origin's breaker and bulkhead live (the demo passes a private one).
        seed: seeds the backoff jitter.
        inner: the transport under the counter (default a connection pool of ``concurrency`` connections).
        clock: the policy's clock (backoff sleeps, durations).
    """
    counter = CountingTransport(_pool(concurrency) if inner is None else inner)
    transport = AsyncResilientTransport(
        counter,
        config=config,
        registry=registry,
        fallback=fallback,
        clock=clock,
        random=random.Random(seed).random,
    )
    return httpx.AsyncClient(base_url=base_url, transport=transport), counter


def classify(response: httpx.Response) -> Kind:
    """``"fallback"`` when the fallback answered, ``"ok"`` for a 2xx from the upstream, else ``"failed"``."""
    if FALLBACK_HEADER in response.headers:
        return "fallback"
    return "ok" if response.is_success else "failed"


def sender(client: httpx.AsyncClient) -> Sender:
    """Send request ``i`` with ``client`` and :func:`classify` the answer; an httpx error is ``"failed"``."""

    async def send(index: int) -> Kind:
        try:
            response = await client.get(work_path(index))
        except httpx.HTTPError:
            return "failed"
        return classify(response)

    return send
