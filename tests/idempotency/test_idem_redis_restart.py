"""RedisStore across a restart of its server: the connections break and the script cache is gone.

The store runs its scripts by EVALSHA on the client (loading a script again once on NOSCRIPT) and its batches
(purge, list_abandoned) through pipelines of Script objects. After a restart the first command on a pooled
connection may fail (StoreUnavailable: commands are not retried); from then on every operation must work again,
each loading its script anew. test_idem_redis_wait.py covers SCRIPT FLUSH for the claim and the completion.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis_servers import PrivateRedis

from stalwart import StoreUnavailable
from stalwart.idempotency import FP_VERSION, Outcome, State, StoredResponse
from stalwart.idempotency.stores.redis import RedisStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")
RESPONSE = StoredResponse(Outcome.RESPONSE, 201, ((b"content-type", b"text/plain"),), b"done")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, "--port", "0")
    try:
        yield server
    finally:
        server.stop()


async def after_restart(operation: Callable[[], Awaitable[T]]) -> T:
    """``operation`` on a store whose server just restarted: at most the first try fails (a broken connection)."""
    try:
        return await operation()
    except StoreUnavailable:
        return await operation()


async def claim(store: RedisStore, record_id: str, owner: str, lease_ttl: float = 30.0) -> Any:
    return await store.claim(
        record_id, fingerprint=b"f" * 32, fp_version=FP_VERSION, owner_token=owner, lease_ttl=lease_ttl, retention=60
    )


async def test_every_operation_works_again_after_the_server_restarts(server: PrivateRedis) -> None:
    await server.start()
    store = RedisStore.from_url(server.url, prefix="restart", check_server_on_first_use=False)
    try:
        await claim(store, "before", "owner-a")  # every script loaded, connections pooled
        await store.purge()
        await store.list_abandoned()

        await server.restart()  # data and script cache gone, pooled connections broken
        first = await after_restart(lambda: claim(store, "r1", "owner-a"))
        assert first.claimed
        assert first.record.fence == 1  # a new server: its fence counter starts again
        fence = first.record.fence
        assert await store.heartbeat("r1", owner_token="owner-a", fence=fence, lease_ttl=30.0, retention=60)
        assert await store.complete("r1", owner_token="owner-a", fence=fence, response=RESPONSE, retention=60)
        replay = await claim(store, "r1", "owner-b")
        assert not replay.claimed
        assert replay.record.state is State.COMPLETED
        assert replay.record.headers == RESPONSE.headers

        await server.restart()
        taken = await after_restart(lambda: claim(store, "r2", "owner-a"))
        assert await store.release("r2", owner_token="owner-a", fence=taken.record.fence)
        assert await store.get("r2") is None
        kept = await claim(store, "r3", "owner-a")
        assert await store.abandon("r3", owner_token="owner-a", fence=kept.record.fence)

        await server.restart()  # the batches: pipelines of Script objects, loaded before they run
        assert [r.record_id for r in await after_restart(store.list_abandoned)] == []
        await store.client.zadd("{restart}:exp", {"expired-by-redis": 0})  # a record Redis itself expired
        assert await store.purge() == 1  # its index entry is dropped and counted by the purge script
        gone = await claim(store, "r4", "owner-a")
        assert await store.abandon("r4", owner_token="owner-a", fence=gone.record.fence)
        assert [r.record_id for r in await store.list_abandoned()] == ["r4"]
    finally:
        await store.aclose()
