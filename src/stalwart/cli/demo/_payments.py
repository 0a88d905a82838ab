"""The ``payments`` scenario: a client that loses responses and retries, against the payments API with and without
idempotency keys.

Both sides run at the same time, each on its own thread and event loop with its own copy of the payments API
(:mod:`._payments_app`) served by uvicorn on a loopback port the kernel picks: one bare, one behind
:class:`~stalwart.idempotency.IdempotencyMiddleware` on the chosen store. Each side sends the same payments (the
seed fixes every payment's user, amount, key, whether it is double-clicked and which of its answers get lost):

- every payment carries a fresh ``Idempotency-Key`` and is retried with that same key until an answer arrives;
- ``loss_rate`` of the answers are "lost on the way back": the server charged, the client never saw it, so it
  retries;
- ``duplicate_rate`` of the payments are sent twice at once (a double click): concurrent duplicates;
- a 409 (the original is still running) is retried after 20 to 50 ms (a real client would honour ``Retry-After``;
  the demo keeps the run short).

Without the middleware every request charges; with it every payment is charged exactly once, and the repeats are
answered by replays or 409s. Stores: SQLite in a temporary directory (default), or Redis / PostgreSQL at
``REDIS_URL`` / ``DATABASE_URL`` under a unique key prefix / schema removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import secrets
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stalwart._exceptions import StoreUnavailable
from stalwart.idempotency import IdempotencyStore, SQLiteStore

from ._outage import MAX_REQUESTS as MAX_PAYMENTS  # one bound for every per-side count
from ._payments_app import DATABASE_URL, REDIS_URL, STORE_KINDS, create_app
from ._server import bind_loopback, serving, url_of
from ._threads import LoopThread, run_side_by_side

__all__ = ["MAX_PAYMENTS", "DemoError", "PaymentsResult", "PaymentsSettings", "Tally", "drive", "run_payments"]

DEFAULT_SEED = 2015
"""The fixed default seed (the same as the outage scenario's)."""

MAX_ATTEMPTS = 20
"""Requests one copy of a payment sends before the client gives up (counted as an error)."""

USERS = ("alice", "bob", "carol")
"""The bearer tokens the payments are sent with (each names a user, so keys are scoped per user)."""

SIDES = ("without_middleware", "with_middleware")
"""The two sides, in report order (also the JSON document's keys)."""


class DemoError(Exception):
    """The scenario cannot run (a store unreachable or not installed); the message says why."""


@dataclass(frozen=True, slots=True)
class PaymentsSettings:
    """The scenario's knobs.

    Attributes:
        payments: payments per side, 1 to :data:`MAX_PAYMENTS` (default 200).
        concurrency: most payments in flight per side (default 50; a double-clicked payment counts once).
        seed: fixes every payment's user, amount, key, duplication and lost answers (default 2015).
        store: ``"sqlite"`` (default), ``"redis"`` or ``"postgres"``.
        loss_rate: share of answers lost on the way back, in [0, 0.9] (default 0.3).
        duplicate_rate: share of payments sent twice at once, in [0, 1] (default 0.2).
        charge_delay: seconds a charge takes at the (simulated) payment provider (default 0.02), long enough
            for a concurrent duplicate to find the original still running.

    Raises:
        ValueError: a value out of range, named by its field.
    """

    payments: int = 200
    concurrency: int = 50
    seed: int = DEFAULT_SEED
    store: str = "sqlite"
    loss_rate: float = 0.3
    duplicate_rate: float = 0.2
    charge_delay: float = 0.02

    def __post_init__(self) -> None:
        if not 1 <= self.payments <= MAX_PAYMENTS:
            raise ValueError(f"payments must be between 1 and {MAX_PAYMENTS}, got {self.payments!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency!r}")
        if self.store not in STORE_KINDS:
            raise ValueError(f"store must be one of {', '.join(STORE_KINDS)}, got {self.store!r}")
        if not 0.0 <= self.loss_rate <= 0.9:
            raise ValueError(f"loss_rate must be between 0 and 0.9, got {self.loss_rate!r}")
        if not 0.0 <= self.duplicate_rate <= 1.0:
            raise ValueError(f"duplicate_rate must be between 0 and 1, got {self.duplicate_rate!r}")
        if not 0.0 <= self.charge_delay <= 10.0:
            raise ValueError(f"charge_delay must be between 0 and 10 seconds, got {self.charge_delay!r}")


@dataclass(slots=True)
class Tally:
    """What one side saw. ``charges`` comes from the server's ledger; the rest is counted by the client.

    Attributes:
        requested: logical payments (each paid once by its user).
        sent: requests sent, retries and duplicates included.
        replays: answers marked ``Idempotent-Replayed: true``.
        conflicts: 409 answers (the original was still running).
        errors: other unexpected answers, transport errors and payments given up after :data:`MAX_ATTEMPTS`.
        charges: charges the API executed.
    """

    requested: int = 0
    sent: int = 0
    replays: int = 0
    conflicts: int = 0
    errors: int = 0
    charges: int = 0

    @property
    def duplicates_prevented(self) -> int:
        """Requests answered without running the handler: replays and 409s."""
        return self.replays + self.conflicts

    @property
    def extra_charges(self) -> int:
        """Charges beyond one per payment: money taken twice (or more)."""
        return max(0, self.charges - self.requested)

    def document(self) -> dict[str, int]:
        """The side's numbers as the JSON document shows them."""
        return {
            "payments_requested": self.requested,
            "requests_sent": self.sent,
            "charges_executed": self.charges,
            "extra_charges": self.extra_charges,
            "duplicates_prevented": self.duplicates_prevented,
            "replays_served": self.replays,
            "conflicts_409": self.conflicts,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class PaymentsResult:
    """Both sides' tallies and the store the middleware used."""

    without_middleware: Tally
    with_middleware: Tally
    store: str
    payments: int

    def document(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "scenario": "payments",
            "store": self.store,
            "payments": self.payments,
            "without_middleware": self.without_middleware.document(),
            "with_middleware": self.with_middleware.document(),
        }


# -- the client -----------------------------------------------------------------------------------------------------


async def _until_answered(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    headers: dict[str, str],
    tally: Tally,
    rng: random.Random,
    *,
    loss_rate: float,
) -> None:
    """Send one copy of a payment, retrying with the same key until an answer arrives (and is not lost)."""
    for _ in range(MAX_ATTEMPTS):
        tally.sent += 1
        try:
            response = await client.post("/payments", json=body, headers=headers)
        except httpx.TransportError:
            tally.errors += 1
            continue  # the client cannot know whether it was charged: retry with the same key
        if response.headers.get("idempotent-replayed") == "true":
            tally.replays += 1
        if response.status_code == 409:  # the original still runs
            tally.conflicts += 1
            await asyncio.sleep(0.02 + 0.03 * rng.random())
            continue
        if rng.random() < loss_rate:  # the answer was lost on the way back: retry with the same key
            continue
        if response.status_code != 201:
            tally.errors += 1
        return
    tally.errors += 1


async def _pay(client: httpx.AsyncClient, index: int, settings: PaymentsSettings, tally: Tally) -> None:
    """Payment ``index``: its user, amount, key and fate follow from the seed and the index alone."""
    rng = random.Random(f"{settings.seed}:{index}")
    body = {"amount": rng.randrange(100, 10_000), "currency": "EUR", "recipient": "shop"}
    headers = {
        "authorization": f"Bearer {rng.choice(USERS)}",
        "idempotency-key": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }
    copies = 2 if rng.random() < settings.duplicate_rate else 1  # a double click: concurrent duplicates
    tally.requested += 1
    await asyncio.gather(
        *(
            _until_answered(
                client,
                body,
                headers,
                tally,
                random.Random(f"{settings.seed}:{index}:{c}"),
                loss_rate=settings.loss_rate,
            )
            for c in range(copies)
        )
    )


async def drive(client: httpx.AsyncClient, settings: PaymentsSettings) -> Tally:
    """Send ``settings.payments`` payments through ``client``, at most ``settings.concurrency`` at a time.

    Returns the client's tally; ``charges`` is read from the API's ``GET /stats`` at the end.
    """
    tally = Tally()
    indexes = iter(range(settings.payments))

    async def worker() -> None:
        for index in indexes:
            await _pay(client, index, settings, tally)

    await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, settings.payments))))
    tally.charges = int((await client.get("/stats")).json()["charges"])
    return tally


# -- stores ---------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def demo_store(kind: str) -> AsyncIterator[IdempotencyStore]:
    """A store for one run, reachable (checked) and left behind nowhere.

    SQLite lives in a temporary directory; Redis gets a unique key prefix and PostgreSQL a unique schema, both
    removed on the way out.

    Raises:
        DemoError: the store's client library is missing or its server does not answer.
    """
    run_id = uuid.uuid4().hex[:12]
    tmp: tempfile.TemporaryDirectory[str] | None = None
    cleanup: Callable[[], Awaitable[None]] | None = None
    if kind == "sqlite":
        tmp = tempfile.TemporaryDirectory(prefix="stalwart-demo-")
        store: Any = SQLiteStore(Path(tmp.name) / "payments.sqlite3")
        where = tmp.name
    elif kind == "redis":
        try:
            from stalwart.idempotency.stores.redis import RedisStore  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise DemoError("the redis store needs redis-py: pip install 'stalwart[redis]'") from exc
        where = os.environ.get("REDIS_URL", REDIS_URL)
        prefix = f"stalwart-demo-{run_id}"
        store = RedisStore.from_url(where, prefix=prefix)

        async def cleanup() -> None:
            keys = [key async for key in store.client.scan_iter(match=f"{{{prefix}}}*", count=1000)]
            if keys:
                await store.client.delete(*keys)

    elif kind == "postgres":
        try:
            from psycopg import sql  # noqa: PLC0415 - optional dependency

            from stalwart.idempotency.stores.postgres import PostgresStore  # noqa: PLC0415
        except ImportError as exc:
            raise DemoError("the postgres store needs psycopg: pip install 'stalwart[postgres]'") from exc
        where = os.environ.get("DATABASE_URL", DATABASE_URL)
        schema = f"stalwart_demo_{run_id}"
        store = PostgresStore.from_url(where, schema=schema, max_size=20)

        async def cleanup() -> None:
            async with store.pool.connection() as conn:
                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    else:
        raise DemoError(f"unknown store {kind!r}; choose one of {', '.join(STORE_KINDS)}")
    try:
        try:
            await store.now()
        except StoreUnavailable as exc:
            raise DemoError(f"the {kind} store is not reachable at {where}: {exc}") from None
        try:
            yield store
        finally:
            if cleanup is not None:
                with contextlib.suppress(Exception):
                    await cleanup()
    finally:
        await store.aclose()
        if tmp is not None:
            tmp.cleanup()


# -- the scenario ---------------------------------------------------------------------------------------------------


async def _run_side(sock: socket.socket, settings: PaymentsSettings, *, idempotency: bool) -> Tally:
    """One side, on its own loop: a store (with the middleware), the API served on ``sock``, the client."""
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(demo_store(settings.store)) if idempotency else None
        app = create_app(
            store=store,
            idempotency=idempotency,
            secret=secrets.token_bytes(32),  # one process serves this side: a secret per run is enough
            charge_delay=settings.charge_delay,
            close_store=False,
        )
        url = await stack.enter_async_context(serving(app, sock))
        limits = httpx.Limits(
            max_connections=2 * settings.concurrency, max_keepalive_connections=2 * settings.concurrency
        )
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(30.0))
        )
        return await drive(client, settings)
    raise AssertionError("unreachable")  # pragma: no cover - mypy cannot see that the block always returns


def run_payments(settings: PaymentsSettings, *, on_start: Callable[[list[str]], None] | None = None) -> PaymentsResult:
    """Run the ``payments`` scenario, both sides at once; block until both are done.

    Args:
        settings: the scenario's knobs.
        on_start: called with the two APIs' base URLs (without, with the middleware) once their sockets listen.

    Raises:
        DemoError: the store cannot be used (nothing was left running).
        KeyboardInterrupt: interrupted; servers, stores, clients and sockets were stopped first.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in SIDES:
            sockets.append(bind_loopback())
        if on_start is not None:
            on_start([url_of(sock) for sock in sockets])
        threads = [
            LoopThread(
                f"stalwart-demo-{side}",
                functools.partial(_run_side, sock, settings, idempotency=side == "with_middleware"),
            )
            for side, sock in zip(SIDES, sockets, strict=True)
        ]
        run_side_by_side(threads)
    finally:
        for sock in sockets:
            sock.close()
    failures = [thread for thread in threads if thread.failed]
    for thread in sorted(failures, key=_cancelled_last):  # the cause first: the other side was only cancelled
        thread.result()
    without, with_ = (thread.result() for thread in threads)
    return PaymentsResult(without, with_, settings.store, settings.payments)


def _cancelled_last(thread: LoopThread[Tally]) -> bool:
    try:
        thread.result()
    except asyncio.CancelledError:
        return True
    except BaseException:
        return False
    return False
