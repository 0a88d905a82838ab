"""Regression: two threads making an origin's first requests at once each built the origin's state.

What was wrong: ``TransportCore.origin_of`` looked the origin up and, when missing, built it (registry breaker and
bulkheads, and the retry budget from ``config.budget``'s factory) and stored it, with nothing between the look-up
and the store. The sync transport is used from many threads, and the registry's calls (and a factory's own work)
let another thread in: both threads built an origin, the budget factory ran twice for one origin (documented as
once per origin), and the first budget was dropped after counting that thread's requests. A factory building a
``RedisRetryBudget`` per origin left the dropped one's Redis client and sync thread running for good, and the two
threads' requests were budgeted apart.

The rule now: an origin's state is built once per transport; a thread that misses it while another thread builds
it waits for that one and uses it.
"""

from __future__ import annotations

import threading

import httpx

from stalwart._budget import RetryBudget
from stalwart._clock import Clock
from stalwart._registry import Registry
from stalwart.httpx import ResilienceConfig, ResilientTransport
from stalwart.httpx._origin import Origin

URL = "https://api.example.com/items"


def test_concurrent_first_use_builds_one_origin_and_one_budget() -> None:
    built: list[str] = []
    other: list[Origin] = []
    transport: ResilientTransport

    def factory(name: str, clock: Clock) -> RetryBudget:
        built.append(name)
        if len(built) == 1:
            # Another thread reaches the same origin while this one is still building it.
            racer = threading.Thread(target=lambda: other.append(transport.origin(URL)))
            racer.start()
            racer.join(0.2)  # it finishes here only when it built the origin too (the fault)
            factory.racer = racer  # type: ignore[attr-defined]
        return RetryBudget(name)

    transport = ResilientTransport(
        httpx.MockTransport(lambda request: httpx.Response(200)),
        config=ResilienceConfig(budget=factory),
        registry=Registry(),
    )
    mine = transport.origin(URL)
    factory.racer.join(10.0)  # type: ignore[attr-defined]
    assert built == ["http:https://api.example.com:443"]
    assert other == [mine]
    assert transport.origin(URL) is mine


def test_a_factory_may_look_up_other_origins() -> None:
    """The building is re-entrant: a factory that asks the transport for another origin does not deadlock."""
    transport: ResilientTransport
    seen: list[str] = []

    def factory(name: str, clock: Clock) -> RetryBudget:
        seen.append(name)
        if name.endswith("api.example.com:443"):
            transport.origin("https://other.example.com")
        return RetryBudget(name)

    transport = ResilientTransport(
        httpx.MockTransport(lambda request: httpx.Response(200)),
        config=ResilienceConfig(budget=factory),
        registry=Registry(),
    )
    transport.origin(URL)
    assert seen == ["http:https://api.example.com:443", "http:https://other.example.com:443"]
