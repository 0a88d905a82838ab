"""Services B and C of the deadline-propagation test, each run by uvicorn in its own process.

``app`` is selected by the ``CASCADE_ROLE`` environment variable:

* ``c``: ``GET /work?mode=fast|hang`` answers at once or hangs until cancelled; ``GET /stats`` reports how many
  requests started, finished, and were cancelled by their deadline, and the budgets the handler saw.
* ``b``: ``GET /work?mode=...`` calls C (``CASCADE_DOWNSTREAM``) through ``AsyncResilientTransport`` (one
  attempt), which sends the time B has left as ``Request-Deadline-Ms``, and answers with C's status and body plus
  its own budget.

Both run behind ``DeadlineMiddleware`` (buffer 0.25 s).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import stalwart as sw
from stalwart.asgi import DeadlineMiddleware
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig

BUFFER = 0.25
stats: dict[str, Any] = {"started": 0, "finished": 0, "cancelled": 0, "budgets": []}


async def c_work(request: Request) -> Response:
    stats["started"] += 1
    stats["budgets"].append(sw.remaining_time())
    try:
        if request.query_params.get("mode") == "hang":
            await asyncio.sleep(3600)
    except asyncio.CancelledError:
        stats["cancelled"] += 1
        raise
    stats["finished"] += 1
    return JSONResponse({"service": "c", "budget": stats["budgets"][-1]})


async def c_stats(request: Request) -> Response:
    return JSONResponse(stats)


async def b_work(request: Request) -> Response:
    budget = sw.remaining_time()
    try:
        answer = await client().get(os.environ["CASCADE_DOWNSTREAM"] + "/work", params=dict(request.query_params))
    except sw.DeadlineExceeded:
        return JSONResponse({"service": "b", "budget": budget, "error": "deadline"}, status_code=504)
    return JSONResponse({"service": "b", "budget": budget, "downstream": answer.json()}, status_code=answer.status_code)


_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    """B's client: the resilient transport, one attempt, which sends the attempt's time left to C by itself."""
    global _client
    if _client is None:
        config = ResilienceConfig(max_attempts=1, use_breaker=False)
        _client = httpx.AsyncClient(transport=AsyncResilientTransport(config=config, registry=sw.Registry()))
    return _client


async def ready(request: Request) -> Response:
    return JSONResponse({"ok": True})


def build(role: str) -> Any:
    routes = [Route("/ready", ready)]
    if role == "c":
        routes += [Route("/work", c_work), Route("/stats", c_stats)]
    else:
        routes += [Route("/work", b_work)]
    return DeadlineMiddleware(Starlette(routes=routes), buffer=BUFFER)


app = build(os.environ.get("CASCADE_ROLE", "c"))
