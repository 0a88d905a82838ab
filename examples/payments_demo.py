"""The payments scenario: a client that loses responses and retries, against the API with and without idempotency.

The same as ``stalwart demo --scenario payments`` (the logic lives in ``stalwart.cli.demo._payments``). Run it::

    python examples/payments_demo.py                     # SQLite in a temporary directory
    STALWART_STORE=redis python examples/payments_demo.py --json
    python examples/payments_demo.py --store postgres --payments 500

It starts the payments API (``examples/payments_api.py``'s app) twice on loopback with uvicorn, one copy bare and
one behind IdempotencyMiddleware, sends the same payments to both through a client whose connection "loses" some
responses (the server charged, the client never saw the answer, so it retries with the same key) and that sometimes
fires concurrent duplicates, then prints: payments requested, charges executed, duplicates prevented and replays
served, with and without the middleware. Options are those of ``stalwart demo`` (``--payments``, ``--store``,
``--concurrency``, ``--seed``, ``--json``); Ctrl-C stops everything.
"""

from __future__ import annotations

import sys

from stalwart.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["demo", "--scenario", "payments", *sys.argv[1:]]))
