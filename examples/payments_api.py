"""The seed's idempotent payments API, done right: ``POST /payments`` behind stalwart's IdempotencyMiddleware.

Run it::

    uvicorn --app-dir examples payments_api:app                       # SQLite (the embedded default)
    STALWART_STORE=redis STALWART_IDEMPOTENCY_SECRET=... uvicorn --app-dir examples payments_api:app   # or postgres

and pay twice with the same key; the second answer is the first one replayed (``Idempotent-Replayed: true``)::

    curl -i -X POST localhost:8000/payments -H 'Authorization: Bearer alice' -H 'Idempotency-Key: order-42' \\
         -H 'Content-Type: application/json' -d '{"amount": 1250, "currency": "EUR", "recipient": "bob"}'

The app lives in the installed package, ``stalwart.cli.demo._payments_app`` (``stalwart demo --scenario payments``
serves the same app); read it there: a FastAPI route decorated with ``@idempotent(required=True)``, the middleware
added with ``app.add_middleware(IdempotencyMiddleware, store=..., resolver=state_resolver(...), secret=...)``, and a
pure ASGI bearer-token layer added after it, so authentication runs first. Any non-empty bearer token names the
user (no token: 401), so scoping can be seen: alice and bob using the same key get independent payments.

Environment:
    STALWART_STORE: ``sqlite`` (default), ``redis`` or ``postgres``.
    STALWART_SQLITE_PATH: the SQLite file (default ``payments-idempotency.sqlite3``).
    REDIS_URL, DATABASE_URL: the servers (defaults ``redis://127.0.0.1:6379/0``,
        ``postgresql://postgres@127.0.0.1:5432/test``).
    STALWART_IDEMPOTENCY_SECRET: the scope secret shared by every instance (at least 32 bytes); required for Redis
        and PostgreSQL (without it the app refuses to start), optional for SQLite (which keeps a generated one in
        its file).
    STALWART_IDEMPOTENCY: ``off`` runs the same API without the middleware (to see the double charges).

``GET /stats`` reports the charges executed and the middleware's counters.
"""

from __future__ import annotations

import os

from stalwart.cli.demo._payments_app import BearerAuth, Payment, PaymentRequest, create_app, make_store

__all__ = ["BearerAuth", "Payment", "PaymentRequest", "app", "create_app", "make_store"]

app = create_app(idempotency=os.environ.get("STALWART_IDEMPOTENCY", "on") != "off")
