"""``ResilientClient``: the seed's combined client (timeout, retries, circuit breaker, bulkhead, fallback) done right.

The seed's version built a new HTTP client per request, retried 4xx responses, held its bulkhead slot while
sleeping and checked its breaker once for all attempts. This one owns a single ``httpx.AsyncClient`` (one connection
pool) over :class:`AsyncResilientTransport`, so every attempt goes through the standard order.
"""

from __future__ import annotations

import dataclasses
import random as _random
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

import httpx

from stalwart._adaptive import AdaptiveTimeout
from stalwart._breaker import CircuitBreaker
from stalwart._bulkhead import Bulkhead
from stalwart._clock import SYSTEM_CLOCK, Clock
from stalwart._registry import Registry

from ._config import ResilienceConfig
from ._origin import AsyncFallback
from ._transport import AsyncResilientTransport

__all__ = ["ResilientClient"]

_DEFAULT_CONFIG = ResilienceConfig()
_TRANSPORT_OPTIONS = ("verify", "cert", "http1", "http2", "limits", "proxy")
"""``httpx.AsyncClient`` options that configure its default transport: given to the inner transport instead."""


def _check_given_policy(
    transport: AsyncResilientTransport,
    config: ResilienceConfig,
    *,
    fallback: AsyncFallback | None,
    registry: Registry | None,
    clock: Clock,
    random: Callable[[], float],
) -> None:
    """Refuse a policy argument that a resilient ``transport``, used as it is, would ignore: one given (not the
    default) and not the transport's own.

    Raises:
        ValueError: naming the first such parameter.
    """
    given = (
        ("config", config is not _DEFAULT_CONFIG and config != transport.config),
        ("fallback", fallback is not None and fallback is not transport._fallback),
        ("registry", registry is not None and registry is not transport.registry),
        ("clock", clock is not SYSTEM_CLOCK and clock is not transport._clock),
        ("random", random is not _random.random and random is not transport._random),
    )
    for parameter, conflicting in given:
        if conflicting:
            raise ValueError(
                f"{parameter}: the transport is an AsyncResilientTransport, used as it is with its own {parameter}; "
                f"set {parameter} on the transport instead (or give a plain inner transport)"
            )


class ResilientClient:
    """An async HTTP client for one dependency with the standard HTTP policy on every request.

    The defaults are the seed's: 10 s per attempt, 3 attempts with exponential backoff from 1 s (full jitter), a
    breaker per origin opening after 5 consecutive failures for 30 s, 20 concurrent requests per origin, and an
    optional fallback. The seed's ``ResilientServiceClient`` (bulkheads per operation type: reads 50, writes 20,
    search 10, and ``get_status()``) is ``ResilientClient(name, base_url, ResilienceConfig(operations=
    SEED_OPERATIONS))``. Use it as an async context manager (or call :meth:`aclose`)::

        async with ResilientClient("payments", "https://payments.internal", fallback=cached) as client:
            response = await client.post("/charges", json=charge, headers={"Idempotency-Key": key})

    Responses are read inside the attempt (``read_response=True`` is forced), so a connection dropped in the middle
    of a body is retried like any other transport error, and the returned responses are complete (except through a
    resilient transport given as ``transport`` or in ``mounts``, which keeps its own config).

    Args:
        name: the client's name: the prefix of its breakers' and bulkheads' registry names
            (``"{name}:{scheme}://{host}:{port}"``) and of its retry events.
        base_url: prefix of relative request URLs (``httpx.AsyncClient``'s ``base_url``).
        config: the policy (default ``ResilienceConfig()``).
        fallback: ``(request, exc) -> httpx.Response``, sync or async, answering a request that failed (open
            circuit, full bulkhead, passed deadline, retries exhausted with an error or a 5xx response); see
            :class:`AsyncResilientTransport`. Default ``None``: failures propagate.
        registry: where the breakers and bulkheads live (default ``stalwart.registry``).
        transport: the inner transport (default ``httpx.AsyncHTTPTransport`` built from ``verify``, ``cert``,
            ``http1``, ``http2``, ``limits`` and ``proxy`` when given). An ``AsyncResilientTransport`` is used as it
            is, not wrapped again (one policy per request): its own config, fallback, registry, name (the prefix of
            the registry names), clock and random apply, so ``config``, ``fallback``, ``registry``, ``clock`` and
            ``random`` must then be left out or be the transport's own.
        clock: monotonic clock (default: the system clock); ``random``: jitter source (default ``random.random``).
        **httpx_client_kwargs: any other ``httpx.AsyncClient`` argument (``headers``, ``auth``, ``timeout``,
            ``follow_redirects``, ...). ``timeout`` defaults to ``config.timeout`` for every phase (none with an
            ``AdaptiveTimeout``, whose limit the transport enforces). ``mounts``
            transports are wrapped in the same policy, except ``AsyncResilientTransport`` ones, used as they are
            (with their own policy). Proxies from the environment are not used (httpx ignores
            them when a transport is given): pass ``proxy=`` explicitly.

    Raises:
        ValueError: ``name`` is empty; ``transport`` is an ``AsyncResilientTransport`` and ``config``,
            ``fallback``, ``registry``, ``clock`` or ``random`` was given and differs from the transport's (the
            message names the parameter).
        TypeError: ``config`` is not a ``ResilienceConfig``; a transport option was given with ``transport``.
    """

    def __init__(
        self,
        name: str,
        base_url: str | httpx.URL = "",
        config: ResilienceConfig = _DEFAULT_CONFIG,
        fallback: AsyncFallback | None = None,
        *,
        registry: Registry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        random: Callable[[], float] = _random.random,
        **httpx_client_kwargs: Any,
    ) -> None:
        if not isinstance(config, ResilienceConfig):
            raise TypeError(f"config must be a ResilienceConfig, got {config!r}")
        options = {key: httpx_client_kwargs.pop(key) for key in _TRANSPORT_OPTIONS if key in httpx_client_kwargs}
        if transport is not None and options:
            raise TypeError(f"{', '.join(options)} configure the default transport: set them on `transport` instead")
        if isinstance(transport, AsyncResilientTransport):  # used as it is: one policy per request
            _check_given_policy(transport, config, fallback=fallback, registry=registry, clock=clock, random=random)
            config = transport.config
        inner = transport if transport is not None else httpx.AsyncHTTPTransport(**options)
        if not config.read_response:
            config = dataclasses.replace(config, read_response=True)

        def wrap(transport: httpx.AsyncBaseTransport, fallback: AsyncFallback | None) -> AsyncResilientTransport:
            if isinstance(transport, AsyncResilientTransport):
                return transport
            return AsyncResilientTransport(
                transport, config=config, registry=registry, fallback=fallback, name=name, clock=clock, random=random
            )

        self._name = name
        self._transport = wrap(inner, fallback)
        mounts = httpx_client_kwargs.pop("mounts", None)
        if mounts is not None:
            httpx_client_kwargs["mounts"] = {
                pattern: None if mounted is None else wrap(mounted, fallback) for pattern, mounted in mounts.items()
            }
        timeout = self._transport.config.timeout  # an adaptive limit is the transport's to enforce, per attempt
        httpx_client_kwargs.setdefault(
            "timeout", httpx.Timeout(None if isinstance(timeout, AdaptiveTimeout) else cast("float | None", timeout))
        )
        self._client = httpx.AsyncClient(base_url=base_url, transport=self._transport, **httpx_client_kwargs)
        if self._client.base_url.host:  # the base URL's breaker and bulkheads exist (and show in health) at once
            self._transport.origin_of(self._client.base_url)

    def __repr__(self) -> str:
        return f"ResilientClient({self._name!r}, {str(self._client.base_url)!r})"

    @property
    def name(self) -> str:
        """The client's name (the prefix of its registry names, unless it was given a resilient ``transport``, whose
        own name is)."""
        return self._name

    @property
    def client(self) -> httpx.AsyncClient:
        """The underlying ``httpx.AsyncClient`` (requests sent with it get the same policy)."""
        return self._client

    @property
    def transport(self) -> AsyncResilientTransport:
        """The resilient transport under the client."""
        return self._transport

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker of ``base_url``'s origin (``None`` with ``use_breaker=False`` or no ``base_url``)."""
        base = self._client.base_url
        return self._transport.origin_of(base).breaker if base.host else None

    @property
    def bulkhead(self) -> Bulkhead | None:
        """The bulkhead of ``base_url``'s origin (``None`` with ``use_bulkhead=False`` or no ``base_url``)."""
        base = self._client.base_url
        return self._transport.origin_of(base).bulkhead if base.host else None

    def get_status(self) -> dict[str, dict[str, int]]:
        """The seed's status report: ``{bulkhead name: {"active": int, "queued": int, "available": int}}`` for the
        client's bulkheads — the base URL's origin bulkhead and one per configured operation
        (``"{name}:{scheme}://{host}:{port}:{operation}"``), plus those of other origins once used. The shape of
        ``/health/bulkheads``, where the registry serves the same bulkheads."""
        return self._transport.get_status()

    async def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """Send a request (``httpx.AsyncClient.request`` arguments) under the policy.

        Returns:
            The final response, read: a success, a response not worth retrying (a 4xx), the last response once
            retries are over, or the fallback's answer.

        Raises:
            CircuitOpenError, BulkheadFullError, DeadlineExceeded, httpx.TransportError: the call failed and no
                fallback is configured (the last error of the attempts propagates, with a note).
        """
        return await self._client.request(method, url, **kwargs)

    async def get(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``GET`` (see :meth:`request`)."""
        return await self._client.request("GET", url, **kwargs)

    async def head(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``HEAD`` (see :meth:`request`)."""
        return await self._client.request("HEAD", url, **kwargs)

    async def options(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``OPTIONS`` (see :meth:`request`)."""
        return await self._client.request("OPTIONS", url, **kwargs)

    async def post(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``POST`` (see :meth:`request`); retried only with an ``Idempotency-Key`` header, or when nothing was
        sent."""
        return await self._client.request("POST", url, **kwargs)

    async def put(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``PUT`` (see :meth:`request`)."""
        return await self._client.request("PUT", url, **kwargs)

    async def patch(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``PATCH`` (see :meth:`request`); retried only with an ``Idempotency-Key`` header, or when nothing was
        sent."""
        return await self._client.request("PATCH", url, **kwargs)

    async def delete(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``DELETE`` (see :meth:`request`)."""
        return await self._client.request("DELETE", url, **kwargs)

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        await self._client.aclose()

    async def __aenter__(self) -> ResilientClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.__aexit__(exc_type, exc, tb)
