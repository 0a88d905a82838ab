"""Store outages through the middleware, on a private redis-server that the tests kill and restart (spec §2.14).

The server keeps an AOF with ``appendfsync always`` in a temporary directory, so a restart after SIGKILL brings back
every acknowledged write, as the spec requires of a Redis deployment. Expected: no double execution ever; 503 when
the claim cannot be decided; the real response delivered when only the completion fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from idem_apps import SECRET, Probe, client, headers, make_app, wrap
from idem_durable import wait_for_lapsed_lease, wait_for_log
from redis_servers import PrivateRedis

from stalwart.idempotency import IdempotencyConfig, scope_id
from stalwart.idempotency.stores.redis import RedisStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAYLOAD = {"amount": 1}
RECORD_ID = scope_id(SECRET, tenant="default", principal="alice", namespace="default", key="k-1")


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(
        tmp_path, "--port", "0", "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"
    )
    try:
        await server.start()
        yield server
    finally:
        server.stop()


async def test_an_outage_at_claim_is_503_and_never_an_execution(redis_server: PrivateRedis) -> None:
    store = RedisStore.from_url(redis_server.url, socket_timeout=0.5)
    probe = Probe()
    mw = wrap(make_app(probe), store)
    try:
        async with client(mw) as c:
            assert (await c.post("/payments", json=PAYLOAD, headers=headers())).status_code == 201
            redis_server.kill()
            down = await c.post("/payments", json=PAYLOAD, headers=headers(key="k-2"))
            assert down.status_code == 503
            assert down.headers["retry-after"] in {"1", "2"}
            replay_down = await c.post("/payments", json=PAYLOAD, headers=headers())
            assert replay_down.status_code == 503  # a replay read that fails is 503 too, never an execution
            await redis_server.start()
            replay = await c.post("/payments", json=PAYLOAD, headers=headers())
            fresh = await c.post("/payments", json=PAYLOAD, headers=headers(key="k-2"))
    finally:
        await store.aclose()
    assert replay.headers["idempotent-replayed"] == "true"  # the AOF kept the record across the crash
    assert fresh.status_code == 201
    assert probe.calls == 2


async def test_an_outage_at_completion_delivers_the_real_response(redis_server: PrivateRedis) -> None:
    store = RedisStore.from_url(redis_server.url, socket_timeout=0.5)
    probe = Probe()
    probe.hold()
    config = IdempotencyConfig(lease_ttl=0.5, heartbeat_every=0.4, completion_budget=1.0)
    mw = wrap(make_app(probe), store, config=config)
    try:
        async with client(mw) as c:
            original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
            await probe.started.wait()
            redis_server.kill()
            probe.release()
            first = await original
            assert first.status_code == 201  # the truth, not a 5xx
            assert mw.statistics()["completion_write_failures"] == 1
            await redis_server.start()
            await wait_for_lapsed_lease(store, RECORD_ID)  # the record survived in progress
            retry = await c.post("/payments", json=PAYLOAD, headers=headers())
    finally:
        await store.aclose()
    assert retry.status_code == 500  # strict: outcome unknown, never a second execution
    assert retry.json()["type"].endswith("/idempotency-outcome-unknown")
    assert probe.calls == 1


async def test_heartbeats_fail_during_an_outage_and_the_completion_lands_after_it(
    redis_server: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore.from_url(redis_server.url, socket_timeout=0.5)
    probe = Probe()
    probe.hold()
    config = IdempotencyConfig(lease_ttl=3.0, heartbeat_every=0.1)
    mw = wrap(make_app(probe), store, config=config)
    try:
        async with client(mw) as c:
            original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
            await probe.started.wait()
            redis_server.kill()
            await wait_for_log(caplog, "heartbeat failed")  # the handler keeps running through the outage
            await redis_server.start()
            probe.release()
            first = await original
            replay = await c.post("/payments", json=PAYLOAD, headers=headers())
    finally:
        await store.aclose()
    assert first.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    assert probe.calls == 1
