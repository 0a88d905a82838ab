"""Bulkheads per operation type in the transports (the seed's ResilientServiceClient): selection by method and path,
isolation, the registry and /health/bulkheads, get_status()."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from _http_harness import NO_JITTER, Harness

from stalwart import BulkheadFullError
from stalwart._registry import Registry
from stalwart.asgi import HealthApp
from stalwart.httpx import SEED_OPERATIONS, Operation, ResilienceConfig, ResilientClient
from stalwart.testing import FakeClock

BASE = "https://api.example.com"
ORIGIN = "http:https://api.example.com:443"

SMALL = (
    Operation("search", 1, paths=("*/search",), max_queue=0),
    Operation("writes", 1, methods=frozenset({"POST"}), max_queue=0),
    Operation("reads", 2, methods=frozenset({"GET"}), max_queue=0),
)


def config(**kwargs: Any) -> ResilienceConfig:
    return ResilienceConfig(backoff=NO_JITTER, **kwargs)


@pytest.fixture(params=["async", "sync"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Gate(httpx.AsyncBaseTransport):
    """Holds every request until released; counts the requests inside."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.inside = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.inside += 1
        try:
            await self.release.wait()
        finally:
            self.inside -= 1
        return httpx.Response(200, text=request.url.path)


def seed_client(registry: Registry, inner: httpx.AsyncBaseTransport | None = None) -> ResilientClient:
    transport = inner if inner is not None else httpx.MockTransport(lambda r: httpx.Response(200))
    return ResilientClient(
        "catalog",
        BASE,
        ResilienceConfig(operations=SEED_OPERATIONS),
        registry=registry,
        transport=transport,
        clock=FakeClock(),
    )


# --- registration and status --------------------------------------------------------------------------------------


async def test_the_seeds_client_registers_its_bulkheads_at_once() -> None:
    registry = Registry()
    client = seed_client(registry)
    prefix = "catalog:https://api.example.com:443"
    assert client.get_status() == {
        prefix: {"active": 0, "queued": 0, "available": 20},
        f"{prefix}:search": {"active": 0, "queued": 0, "available": 10},
        f"{prefix}:writes": {"active": 0, "queued": 0, "available": 20},
        f"{prefix}:reads": {"active": 0, "queued": 0, "available": 50},
    }
    assert registry.bulkheads_snapshot() == client.get_status()
    assert set(registry.snapshot()["bulkheads"]) == set(client.get_status())
    await client.aclose()


async def test_health_endpoint_serves_them() -> None:
    registry = Registry()
    client = seed_client(registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=HealthApp(registry)), base_url="http://h") as h:
        document = (await h.get("/health/bulkheads")).json()
    assert document["catalog:https://api.example.com:443:search"] == {"active": 0, "queued": 0, "available": 10}
    assert len(document) == 4
    await client.aclose()


async def test_get_status_counts_active_requests_per_operation() -> None:
    registry = Registry()
    gate = Gate()
    client = seed_client(registry, gate)
    prefix = "catalog:https://api.example.com:443"
    tasks = [asyncio.create_task(client.get(f"/items/{i}")) for i in range(3)]
    tasks += [asyncio.create_task(client.get("/v1/search", params={"q": "x"})) for _ in range(2)]
    tasks += [asyncio.create_task(client.post("/orders", content=b"{}"))]
    while gate.inside < 6:
        await asyncio.sleep(0)
    status = client.get_status()
    assert status[f"{prefix}:reads"] == {"active": 3, "queued": 0, "available": 47}
    assert status[f"{prefix}:search"] == {"active": 2, "queued": 0, "available": 8}
    assert status[f"{prefix}:writes"] == {"active": 1, "queued": 0, "available": 19}
    assert status[prefix]["active"] == 0  # covered requests do not use the origin's own bulkhead
    gate.release.set()
    await asyncio.gather(*tasks)
    assert all(entry["active"] == 0 for entry in client.get_status().values())
    await client.aclose()


# --- selection and isolation --------------------------------------------------------------------------------------


async def test_each_request_takes_a_slot_of_its_operation(mode: str) -> None:
    seen: list[tuple[str, dict[str, int]]] = []
    holder: list[Harness] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = holder[0].transport.get_status()
        seen.append((request.url.path, {name: entry["active"] for name, entry in status.items()}))
        return httpx.Response(200)

    inner: Any = httpx.MockTransport(handler)
    h = Harness(mode, inner=inner, config=config(operations=SMALL))
    holder.append(h)
    await h.request("GET", BASE + "/items")
    await h.request("GET", BASE + "/items/search")
    await h.request("POST", BASE + "/orders", content=b"x")
    await h.request("DELETE", BASE + "/orders/1")
    actives = {path: [name for name, active in counts.items() if active] for path, counts in seen}
    assert actives == {
        "/items": [f"{ORIGIN}:reads"],
        "/items/search": [f"{ORIGIN}:search"],
        "/orders": [f"{ORIGIN}:writes"],
        "/orders/1": [ORIGIN],  # no operation covers DELETE: the origin's bulkhead
    }


async def test_a_full_operation_rejects_while_the_others_still_admit() -> None:
    gate = Gate()
    h = Harness("async", inner=gate, config=config(operations=SMALL))
    searching = asyncio.create_task(h.request("GET", BASE + "/search"))
    while gate.inside < 1:
        await asyncio.sleep(0)
    with pytest.raises(BulkheadFullError) as info:
        await h.request("GET", BASE + "/search")
    assert info.value.name == f"{ORIGIN}:search"
    reading = asyncio.create_task(h.request("GET", BASE + "/items"))  # reads are unaffected
    while gate.inside < 2:
        await asyncio.sleep(0)
    gate.release.set()
    assert (await searching).status_code == 200
    assert (await reading).status_code == 200


async def test_no_operation_slot_is_held_during_a_backoff_sleep(mode: str) -> None:
    h = Harness(mode, [503, 200], config=config(operations=SMALL))
    seen: list[int] = []
    sleep, asleep = h.clock.sleep, h.clock.asleep

    def reads_active() -> int:
        return int(h.registry.get_bulkhead(f"{ORIGIN}:reads").statistics().active)

    def spy_sleep(seconds: float) -> None:
        seen.append(reads_active())
        sleep(seconds)

    async def spy_asleep(seconds: float) -> None:
        seen.append(reads_active())
        await asleep(seconds)

    h.clock.sleep = spy_sleep  # type: ignore[method-assign]
    h.clock.asleep = spy_asleep  # type: ignore[method-assign]
    assert (await h.request("GET", BASE + "/items")).status_code == 200
    assert seen == [0]


async def test_operation_bulkheads_apply_with_the_origin_bulkhead_off(mode: str) -> None:
    h = Harness(mode, [200], config=config(operations=SMALL, use_bulkhead=False))
    await h.request("GET", BASE + "/items")
    assert sorted(h.registry.bulkheads) == [f"{ORIGIN}:reads", f"{ORIGIN}:search", f"{ORIGIN}:writes"]


async def test_each_origin_has_its_own_operation_bulkheads(mode: str) -> None:
    h = Harness(mode, [200], config=config(operations=SMALL))
    await h.request("GET", "https://a.example.com/x")
    await h.request("GET", "https://b.example.com/x")
    assert sorted(h.transport.get_status()) == sorted(
        f"http:https://{host}.example.com:443{suffix}"
        for host in "ab"
        for suffix in ("", ":search", ":writes", ":reads")
    )


async def test_hedged_attempts_use_the_operations_bulkhead() -> None:
    seen: list[int] = []
    holder: list[Harness] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(holder[0].registry.get_bulkhead(f"{ORIGIN}:reads").statistics().active)
        return httpx.Response(200)

    h = Harness("async", inner=httpx.MockTransport(handler), config=config(operations=SMALL, hedge=1.0))
    holder.append(h)
    assert (await h.request("GET", BASE + "/items")).status_code == 200
    assert seen == [1]


# --- configuration ------------------------------------------------------------------------------------------------


def test_config_validates_operations() -> None:
    assert ResilienceConfig().operations == ()
    assert ResilienceConfig(operations=list(SEED_OPERATIONS)).operations == SEED_OPERATIONS
    with pytest.raises(TypeError, match="operations"):
        ResilienceConfig(operations=SEED_OPERATIONS[0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Operation"):
        ResilienceConfig(operations=("reads",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        ResilienceConfig(operations=(SEED_OPERATIONS[0], SEED_OPERATIONS[0]))
