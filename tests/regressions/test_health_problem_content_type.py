"""Regression: ``HealthApp`` served its 404 and 405 problem documents as ``application/json``.

What was wrong: the bodies of the 404 (unknown path) and 405 (a method other than GET or HEAD) answers are RFC 9457
problem documents (``type``, ``title``, ``status``), but they went out with ``content-type: application/json``, the
type of the health documents; RFC 9457 §3 registers ``application/problem+json`` for them, and clients and gateways
that recognise problem details by media type (and stalwart's own ``KeyedBulkheadMiddleware`` 503, which sends
``application/problem+json``) took them for a health document. Now every problem answer carries
``application/problem+json``; the health documents (200 and the critical 503) stay ``application/json``.
"""

from __future__ import annotations

import httpx
import pytest

import stalwart as sw
from stalwart.asgi import HealthApp


def client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health/everything", 404),
        ("HEAD", "/health/everything", 404),
        ("POST", "/health/circuits", 405),
        ("DELETE", "/health/bulkheads", 405),
        ("OPTIONS", "/health/circuits", 405),
    ],
)
async def test_problem_answers_are_problem_json(method: str, path: str, status: int) -> None:
    async with client(HealthApp(sw.Registry())) as http:
        response = await http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    if method != "HEAD":
        assert response.json()["status"] == status


async def test_health_documents_stay_json() -> None:
    registry = sw.Registry()
    registry.breaker("payments", failure_threshold=1, critical=True).force_open()
    async with client(HealthApp(registry)) as http:
        circuits = await http.get("/health/circuits")
        bulkheads = await http.get("/health/bulkheads")
    assert circuits.status_code == 503
    assert circuits.headers["content-type"] == "application/json"
    assert bulkheads.status_code == 200
    assert bulkheads.headers["content-type"] == "application/json"
