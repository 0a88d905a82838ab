"""Regression: a resilient transport given where an inner transport goes was wrapped in the policy a second time.

What was wrong: ``AsyncResilientTransport(AsyncResilientTransport(...))`` (or the sync pair),
``ResilientClient(transport=AsyncResilientTransport(...))`` and a resilient transport in a ``ResilientClient``'s
``mounts`` all put a second retry loop, breaker and bulkhead around the first. The attempts multiplied (3 x 3 = 9
requests to a failing origin for one call, the retry storm the budget is there to prevent), each origin got two
breakers (the same registry entry acquired twice per attempt when the names agreed, so a half-open breaker's single
trial was taken by the outer layer and the inner one rejected it), and each attempt two bulkhead slots.

The rule now (the expectation of a user of urllib3's ``Retry`` or httpx-retries' ``RetryTransport``: one policy per
request): ``ResilientClient`` uses a resilient transport it is given (``transport=`` or a ``mounts`` value) as it
is, with its own policy; its ``config``, ``fallback``, ``registry``, ``clock`` or ``random`` given as well and
different from the transport's raise ``ValueError`` naming the parameter. Constructing a resilient transport around
another raises ``ValueError`` naming ``transport`` (use the transport as it is, or wrap its ``.transport``).
"""

from __future__ import annotations

import httpx
import pytest

from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientClient, ResilientTransport
from stalwart.testing import FakeClock, testing

BASE = "https://api.example.com"
OTHER = "https://other.example.com"


class Upstream:
    """Always 503; counts the requests that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return httpx.Response(503)


def test_a_resilient_transport_cannot_wrap_a_resilient_transport() -> None:
    registry = Registry()
    inner_async = AsyncResilientTransport(registry=registry)
    with pytest.raises(ValueError, match=r"^transport: "):
        AsyncResilientTransport(inner_async, registry=registry)
    inner_sync = ResilientTransport(registry=registry)
    with pytest.raises(ValueError, match=r"^transport: "):
        ResilientTransport(inner_sync, registry=registry)


async def test_the_client_uses_a_resilient_transport_as_it_is() -> None:
    upstream = Upstream()
    registry = Registry()
    transport = AsyncResilientTransport(
        httpx.MockTransport(upstream.handler), config=ResilienceConfig(max_attempts=3), registry=registry
    )
    with testing(no_sleep=True):
        async with ResilientClient("api", BASE, transport=transport) as client:
            response = await client.get("/")
            assert client.transport is transport
    assert response.status_code == 503
    assert upstream.calls == 3  # was 9: three attempts of the client's loop, each three of the transport's
    assert sorted(registry.breakers) == ["http:https://api.example.com:443"]


async def test_a_resilient_mount_is_used_as_it_is() -> None:
    upstream = Upstream()
    other = Upstream()
    registry = Registry()
    mounted = AsyncResilientTransport(
        httpx.MockTransport(other.handler), config=ResilienceConfig(max_attempts=2), name="other", registry=registry
    )
    config = ResilienceConfig(max_attempts=3)
    with testing(no_sleep=True):
        async with ResilientClient(
            "api",
            BASE,
            config,
            transport=httpx.MockTransport(upstream.handler),
            registry=registry,
            mounts={OTHER: mounted},
        ) as client:
            assert (await client.get(f"{OTHER}/")).status_code == 503
            assert (await client.get("/")).status_code == 503
    assert other.calls == 2  # was 6: the mount's own policy only
    assert upstream.calls == 3  # a plain mount or transport is wrapped in the client's policy, as before
    assert sorted(registry.breakers) == ["api:https://api.example.com:443", "other:https://other.example.com:443"]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("config", ResilienceConfig(max_attempts=5)),
        ("fallback", lambda request, exc: httpx.Response(200)),
        ("registry", Registry()),
        ("clock", FakeClock()),
        ("random", lambda: 0.5),
    ],
)
def test_a_policy_argument_that_the_transport_would_ignore_is_refused(parameter: str, value: object) -> None:
    transport = AsyncResilientTransport(registry=Registry())
    with pytest.raises(ValueError, match=rf"^{parameter}: "):
        ResilientClient("api", BASE, transport=transport, **{parameter: value})  # type: ignore[arg-type]


def test_the_transports_own_settings_may_be_repeated() -> None:
    registry = Registry()
    config = ResilienceConfig(max_attempts=2, read_response=True)
    transport = AsyncResilientTransport(config=config, registry=registry)
    client = ResilientClient("api", BASE, config, transport=transport, registry=registry)
    assert client.transport is transport
