"""The ``stalwart.asgi.HealthApp`` endpoint, over httpx's ASGI transport: bare, and mounted in Starlette and FastAPI."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

import stalwart as sw
from stalwart.asgi import HealthApp
from stalwart.testing import FakeClock


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> sw.Registry:
    reg = sw.Registry(defaults={"clock": clock})
    reg.breaker("payments", failure_threshold=1, reset_timeout=30.0, critical=True)
    reg.breaker("search", failure_threshold=1, reset_timeout=30.0)
    reg.bulkhead("reads", max_concurrent=50)
    return reg


def client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")  # type: ignore[arg-type]


def trip(registry: sw.Registry, name: str) -> None:
    breaker = registry.get(name)
    assert breaker is not None
    with pytest.raises(Boom):
        breaker.call(fail)


CLOSED = {"state": "closed", "failure_rate": None, "slow_call_rate": None, "calls": 0, "retry_after": None}


async def test_circuits_document_and_status_codes(registry: sw.Registry, clock: FakeClock) -> None:
    async with client(HealthApp(registry)) as http:
        response = await http.get("/health/circuits")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == {"status": "ok", "circuits": {"payments": CLOSED, "search": CLOSED}}

        trip(registry, "search")  # not critical: degraded, still 200
        response = await http.get("/health/circuits")
        assert response.status_code == 200
        assert response.json()["status"] == "degraded"
        assert response.json()["circuits"]["search"]["state"] == "open"

        trip(registry, "payments")  # critical and open: 503
        clock.advance(10.0)
        response = await http.get("/health/circuits")
        assert response.status_code == 503
        assert response.json()["circuits"]["payments"] == {
            "state": "open",
            "failure_rate": None,
            "slow_call_rate": None,
            "calls": 0,
            "retry_after": 20.0,
        }

        registry.reset_all()
        assert (await http.get("/health/circuits")).status_code == 200


async def test_critical_breaker_half_open_or_forced_open(registry: sw.Registry) -> None:
    payments = registry.get("payments")
    assert payments is not None
    async with client(HealthApp(registry)) as http:
        payments.transition_to("half_open")
        response = await http.get("/health/circuits")
        assert (response.status_code, response.json()["status"]) == (200, "degraded")
        payments.force_open()
        assert (await http.get("/health/circuits")).status_code == 503


async def test_bulkheads_document(registry: sw.Registry) -> None:
    async with client(HealthApp(registry)) as http:
        response = await http.get("/health/bulkheads")
        assert response.status_code == 200
        assert response.json() == {"reads": {"active": 0, "queued": 0, "available": 50}}


async def test_rate_model_reports_its_rates(clock: FakeClock) -> None:
    reg = sw.Registry()
    breaker = reg.breaker(
        "api", window=sw.CountWindow(4), minimum_calls=4, slow_call_duration=10.0, failure_rate_threshold=75.0
    )
    for outcome in "sfsf":
        if outcome == "f":
            with pytest.raises(Boom):
                breaker.call(fail)
        else:
            breaker.call(int)
    async with client(HealthApp(reg)) as http:
        circuit = (await http.get("/health/circuits")).json()["circuits"]["api"]
    assert circuit == {"state": "closed", "failure_rate": 50.0, "slow_call_rate": 0.0, "calls": 4, "retry_after": None}


async def test_methods_and_unknown_paths(registry: sw.Registry) -> None:
    async with client(HealthApp(registry)) as http:
        head = await http.head("/health/circuits")
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) > 0
        post = await http.post("/health/circuits")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        missing = await http.get("/health/everything")
        assert missing.status_code == 404
        assert missing.json()["status"] == 404
        assert (await http.get("/health/circuits/")).status_code == 200


@pytest.fixture
def default_registry() -> Iterator[sw.Registry]:
    sw.registry.clear()
    yield sw.registry
    sw.registry.clear()


async def test_default_registry(default_registry: sw.Registry) -> None:
    default_registry.breaker("default-one")
    async with client(HealthApp()) as http:
        response = await http.get("/health/circuits")
    assert list(response.json()["circuits"]) == ["default-one"]


async def test_mounted_in_starlette(registry: sw.Registry) -> None:
    app = Starlette(routes=[Mount("/health", app=HealthApp(registry))])
    async with client(app) as http:
        response = await http.get("/health/circuits")
        assert response.status_code == 200
        assert set(response.json()["circuits"]) == {"payments", "search"}
        assert (await http.get("/health/bulkheads")).json()["reads"]["available"] == 50
        trip(registry, "payments")
        assert (await http.get("/health/circuits")).status_code == 503


async def test_mounted_in_fastapi(registry: sw.Registry) -> None:
    app = FastAPI()

    @app.get("/orders")
    async def orders() -> dict[str, str]:
        return {"orders": "none"}

    app.mount("/ops", HealthApp(registry))
    async with client(app) as http:
        assert (await http.get("/orders")).json() == {"orders": "none"}
        response = await http.get("/ops/health/circuits")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        trip(registry, "payments")
        assert (await http.get("/ops/health/circuits")).status_code == 503


async def test_lifespan_and_websocket_scopes() -> None:
    app = HealthApp(sw.Registry())
    sent: list[dict[str, object]] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, object]:
        return next(incoming)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    await app({"type": "websocket", "path": "/health/circuits"}, receive, send)  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete", "websocket.close"]
    assert "HealthApp" in repr(app)


async def test_documented_fastapi_mount(registry: sw.Registry) -> None:
    app = FastAPI()
    app.mount("/health", HealthApp(registry))
    async with client(app) as http:
        assert (await http.get("/health/circuits")).json()["status"] == "ok"
        assert (await http.get("/health/bulkheads")).json() == {"reads": {"active": 0, "queued": 0, "available": 50}}
