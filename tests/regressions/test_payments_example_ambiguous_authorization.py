"""Regression: the payments example's bearer auth took the *last* of several ``Authorization`` lines as the user.

``Authorization`` is a singleton field (RFC 9110 §11.6.2): a request with two lines is malformed, and a layer in
front (a gateway checking the first line) and this one (using the last) would disagree about who is paying, which
is the identity the idempotency scope is built from (spec §2.4: the resolver reads only what auth verified). Seen by
running the example: ``Authorization: Bearer alice`` + ``Authorization: Bearer bob`` paid as bob. More than one
``Authorization`` line is now refused with 401, like a missing token; one line works as before.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from stalwart.cli.demo._payments_app import create_app
from stalwart.idempotency import SQLiteStore

BODY = {"amount": 1250, "currency": "EUR", "recipient": "bob"}


async def test_several_authorization_lines_are_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.sqlite3")
    app = create_app(store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        lines = [("authorization", "Bearer alice"), ("authorization", "Bearer bob"), ("idempotency-key", "k-1")]
        both = await c.post("/payments", json=BODY, headers=httpx.Headers(lines))
        with_basic = [("authorization", "Basic eDp5"), ("authorization", "Bearer bob"), ("idempotency-key", "k-2")]
        mixed = await c.post("/payments", json=BODY, headers=httpx.Headers(with_basic))
        one = await c.post("/payments", json=BODY, headers={"authorization": "Bearer alice", "idempotency-key": "k-3"})
        stats = (await c.get("/stats")).json()
    await store.aclose()
    assert (both.status_code, mixed.status_code, one.status_code) == (401, 401, 201)
    assert both.headers["www-authenticate"] == "Bearer"
    assert stats["charges"] == 1
