"""Functions run in child processes by the idempotency tests (importable by name under the spawn start method)."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
from typing import Any

from stalwart.idempotency import FP_VERSION
from stalwart.idempotency.stores import SQLiteStore


def sqlite_claims(path: str, record_ids: list[str]) -> list[tuple[str, int]]:
    """Claim every record id from a fresh SQLiteStore; return (record_id, fence) for each claim won."""

    async def main() -> list[tuple[str, int]]:
        store = SQLiteStore(path)
        won = []
        try:
            for rid in record_ids:
                result = await store.claim(
                    rid,
                    fingerprint=b"\x01" * 32,
                    fp_version=FP_VERSION,
                    owner_token=secrets.token_hex(16),
                    lease_ttl=60.0,
                    retention=600.0,
                )
                if result.claimed:
                    won.append((rid, result.record.fence))
        finally:
            await store.aclose()
        return won

    return asyncio.run(main())


def sqlite_secret(path: str) -> bytes:
    """The default secret a fresh SQLiteStore on ``path`` reports."""

    async def main() -> bytes:
        store = SQLiteStore(path)
        try:
            return await store.default_secret()
        finally:
            await store.aclose()

    return asyncio.run(main())


# -- the multi-process proof and the crash tests -------------------------------------------------------------------

SECRET = b"multi-process-test-secret-32-bytes!!"


def make_store(kind: str, target: str, name: str) -> Any:
    """A durable store in a child process: ``target`` is a file path or a server URL, ``name`` a prefix/schema."""
    if kind == "sqlite":
        return SQLiteStore(target)
    if kind == "redis":
        from stalwart.idempotency.stores.redis import RedisStore  # noqa: PLC0415 - optional dependency

        return RedisStore.from_url(target, prefix=name)
    from stalwart.idempotency.stores.postgres import PostgresStore  # noqa: PLC0415 - optional dependency

    return PostgresStore.from_url(target, schema=name)


def payments_app(store: Any, effects: str, *, config: Any, hold: Any = None, delay: float = 0.0) -> Any:
    """A Starlette payments app behind the middleware; each execution appends its pid to the ``effects`` file."""
    from starlette.applications import Starlette  # noqa: PLC0415 - imported in the child only
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import JSONResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    from stalwart.idempotency import IdempotencyMiddleware, Identity  # noqa: PLC0415

    async def pay(request: Request) -> JSONResponse:
        await request.body()
        if hold is not None:
            hold("claimed")
        with open(effects, "a", encoding="ascii") as f:  # the side effect: one line per execution
            f.write(f"{os.getpid()}\n")
        if hold is not None:
            hold("charged")
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse({"payment_id": f"p-{os.getpid()}"}, status_code=201)

    app = Starlette(routes=[Route("/payments", pay, methods=["POST"])])
    return IdempotencyMiddleware(
        app, store=store, secret=SECRET, resolver=lambda scope: Identity("alice"), config=config, purge_interval=None
    )


def burst(kind: str, target: str, name: str, effects: str, requests: int, seed: int, barrier: Any, out: Any) -> None:
    """One OS process: wait at the barrier, then send ``requests`` identical payments concurrently."""
    import httpx  # noqa: PLC0415

    from stalwart.idempotency import IdempotencyConfig  # noqa: PLC0415

    rng = random.Random(seed)

    async def main() -> list[tuple[int, bool]]:
        store = make_store(kind, target, name)
        config = IdempotencyConfig(lease_ttl=30.0, retention=3600.0)
        app = payments_app(store, effects, config=config, delay=rng.uniform(0.0, 0.05))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proc") as client:

            async def one() -> tuple[int, bool]:
                await asyncio.sleep(rng.uniform(0.0, 0.03))
                r = await client.post("/payments", json={"amount": 100}, headers={"idempotency-key": "pay-1"})
                return r.status_code, r.headers.get("idempotent-replayed") == "true"

            await store.get("0" * 64)  # connect before the start line, so the burst is concurrent
            await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
            statuses = await asyncio.gather(*(one() for _ in range(requests)))
        await store.aclose()
        return list(statuses)

    out.put(asyncio.run(main()))


def crash_victim(kind: str, target: str, name: str, effects: str, reclaim: bool, stage: str, ready: Any) -> None:
    """Run one payment and stop at ``stage`` ("claimed" or "charged"), telling the parent, until it is killed."""
    import httpx  # noqa: PLC0415

    from stalwart.idempotency import IdempotencyConfig  # noqa: PLC0415

    def hold(reached: str) -> None:
        if reached == stage:
            ready.put(os.getpid())
            time.sleep(3600)  # the parent sends SIGKILL here

    async def main() -> None:
        store = make_store(kind, target, name)
        config = IdempotencyConfig(lease_ttl=0.5, heartbeat_every=0.4, reclaim_on_lease_expiry=reclaim)
        app = payments_app(store, effects, config=config, hold=hold)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://victim") as client:
            await client.post("/payments", json={"amount": 100}, headers={"idempotency-key": "pay-1"})

    asyncio.run(main())
