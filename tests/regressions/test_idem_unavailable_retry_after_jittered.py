"""Regression: a 503 "store unavailable" answered ``Retry-After: 1`` on every failed transactional commit.

Spec §2.11: the 503 ``idempotency-store-unavailable`` carries ``Retry-After`` "default 1-2 s, jittered", so clients
turned away by one outage do not all come back in the same second. The lease-mode paths jittered it with the
middleware's ``random``; transactional mode sent a constant ``1`` after a commit failed. Every 503 of the kind now
follows the injected random; these tests drive it to both ends of [0, 1), so a constant fails them.
"""

from __future__ import annotations

import contextlib
import random as random_module
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _idem_asgi import CountingApp, FaultyStore, post, wrap

from stalwart import StoreUnavailable
from stalwart.idempotency import IdempotencyConfig, StoredResponse
from stalwart.idempotency._answers import unavailable_retry_after


class FakeTx:
    acquired = True
    existing = None
    now = 0.0
    connection = object()

    async def rollback(self) -> None:
        pass

    async def complete(self, response: StoredResponse, *, retention: float) -> None:
        raise StoreUnavailable("commit: connection reset")


class FailingStore(FaultyStore):
    """Fails where told: ``"claim"`` (lease mode), ``"open"`` (the transaction) or ``"commit"``."""

    def __init__(self, where: str) -> None:
        super().__init__(fail_at={"claim"} if where == "claim" else ())
        self.where = where

    @contextlib.asynccontextmanager
    async def transaction(
        self, record_id: str, *, fingerprint: bytes, fp_version: int, **limits: float | None
    ) -> AsyncIterator[FakeTx]:
        if self.where == "open":
            raise StoreUnavailable("no connection")
        yield FakeTx()


async def retry_after(mw: Any) -> tuple[int | None, bytes]:
    answer = await post(mw)
    return answer.status, answer.headers[b"retry-after"]


@pytest.mark.parametrize(("drawn", "expected"), [(0.0, b"1"), (0.49, b"1"), (0.5, b"2"), (0.999, b"2")])
@pytest.mark.parametrize("where", ["claim", "open", "commit"])
async def test_every_store_unavailable_503_is_jittered_by_the_injected_random(
    where: str, drawn: float, expected: bytes
) -> None:
    draw: Callable[[], float] = lambda: drawn  # noqa: E731  # only the middleware's random= is driven
    mw = wrap(
        CountingApp(body=b"created"),
        FailingStore(where),
        config=IdempotencyConfig(transactional=where in ("open", "commit")),
        random=draw,
    )
    assert await retry_after(mw) == (503, expected)


def test_the_jitter_spans_one_to_two_seconds() -> None:
    seeded = random_module.Random(20_241_130)
    values = {unavailable_retry_after(seeded.random) for _ in range(200)}
    assert values == {1, 2}
