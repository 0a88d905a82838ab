"""Functions run in child processes by the idempotency tests (importable by name under the spawn start method)."""

from __future__ import annotations

import asyncio
import secrets

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
