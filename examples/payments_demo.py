"""The payments scenario: a client that loses responses and retries, against the API with and without idempotency.

Run it from the repository root::

    python examples/payments_demo.py            # SQLite in a temporary directory
    STALWART_STORE=redis python examples/payments_demo.py

It starts ``payments_api`` on loopback with uvicorn, sends payments through a client whose connection "loses" some
responses (the server executed the request, the client never saw the answer, so it retries with the same key) and
that sometimes fires concurrent duplicates, then prints: payments requested, charges executed, duplicates prevented
and replays served, once without the middleware and once with it.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from payments_api import create_app

from stalwart.cli.demo._server import bind_loopback, serving, url_of
from stalwart.idempotency import SQLiteStore


@dataclass
class Tally:
    requested: int = 0
    sent: int = 0
    replays: int = 0
    conflicts: int = 0
    charges: int = 0

    @property
    def duplicates_prevented(self) -> int:
        return self.sent - self.charges


async def pay(client: httpx.AsyncClient, user: str, tally: Tally, rng: random.Random) -> None:
    """One logical payment: retried with the same key until an answer arrives (some answers are "lost")."""
    key = str(uuid.uuid4())
    body = {"amount": rng.randrange(100, 10_000), "currency": "EUR", "recipient": "shop"}
    request_headers = {"authorization": f"Bearer {user}", "idempotency-key": key}
    tally.requested += 1
    copies = 2 if rng.random() < 0.2 else 1  # a double-click: concurrent duplicates
    await asyncio.gather(*(_until_answered(client, body, request_headers, tally, rng) for _ in range(copies)))


async def _until_answered(
    client: httpx.AsyncClient, body: dict[str, Any], request_headers: dict[str, str], tally: Tally, rng: random.Random
) -> None:
    for _ in range(20):
        tally.sent += 1
        response = await client.post("/payments", json=body, headers=request_headers)
        if response.headers.get("idempotent-replayed") == "true":
            tally.replays += 1
        if response.status_code == 409:
            tally.conflicts += 1
            await asyncio.sleep(0.01)
            continue
        if rng.random() < 0.3:  # the response was lost on the way back: retry with the same key
            continue
        response.raise_for_status()
        return
    raise RuntimeError("no answer after 20 attempts")


async def run(*, idempotency: bool, payments: int = 40, seed: int = 7) -> Tally:
    """Serve the API on loopback and run the client against it."""
    rng = random.Random(seed)
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        store = None
        if idempotency and os.environ.get("STALWART_STORE", "sqlite") == "sqlite":
            store = SQLiteStore(Path(tmp) / "payments.sqlite3")
        app = create_app(store=store, idempotency=idempotency)
        sock = bind_loopback()
        async with serving(app, sock), httpx.AsyncClient(base_url=url_of(sock)) as client:
            users = ["alice", "bob", "carol"]
            await asyncio.gather(*(pay(client, rng.choice(users), tally, rng) for _ in range(payments)))
            tally.charges = (await client.get("/stats")).json()["charges"]
        if store is not None:
            await store.aclose()
    return tally


def report(title: str, tally: Tally) -> None:
    print(f"{title}")
    print(f"  payments requested     {tally.requested:5d}")
    print(f"  requests sent          {tally.sent:5d}")
    print(f"  charges executed       {tally.charges:5d}")
    print(f"  duplicates prevented   {tally.duplicates_prevented:5d}")
    print(f"  replays served         {tally.replays:5d}")
    print(f"  409 while in progress  {tally.conflicts:5d}")


async def main() -> None:
    report("without the idempotency middleware", await run(idempotency=False))
    report("with IdempotencyMiddleware", await run(idempotency=True))


if __name__ == "__main__":
    asyncio.run(main())
