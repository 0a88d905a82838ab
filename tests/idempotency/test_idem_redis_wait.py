"""RedisStore's optional ``WAIT`` after claim and completion (spec §2.16.3), on private redis-server processes.

A primary on a free loopback port and a replica of it (``--replicaof``) on a unix socket, both in the test's
temporary directory. The replica is frozen with SIGSTOP to show that a claim or a completion does not return before
the replica has the write; a primary alone shows what a shortfall does. Nothing here waits a fixed time: the tests
poll for a state (the replication link up, the WAIT blocked) and assert on it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from idem_apps import Probe, client, headers, make_app, wrap
from redis_servers import PrivateRedis

from stalwart import StoreUnavailable
from stalwart.idempotency import FP_VERSION, Outcome, State, StoredResponse
from stalwart.idempotency.stores import redis as redis_store_module
from stalwart.idempotency.stores.redis import RedisStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FP = b"\x01" * 32
RESPONSE = StoredResponse(Outcome.RESPONSE, 201, ((b"content-type", b"application/json"),), b'{"id": 1}')
PREFIX = "wait-test"


def record_key(record_id: str) -> str:
    return f"{{{PREFIX}}}:r:{record_id}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def poll(condition: Callable[[], Any], what: str) -> None:
    for _ in range(3000):  # up to about 30 s: a state to reach, not a timing assertion
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never reached: {what}")


@pytest.fixture
async def lone_primary(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A primary without replicas: every WAIT falls short."""
    server = PrivateRedis(tmp_path / "lone", "--port", "0")
    try:
        await server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def primary_and_replica(tmp_path: Path) -> AsyncIterator[tuple[PrivateRedis, PrivateRedis]]:
    """A primary (loopback TCP, which replication needs) and one replica connected to it."""
    servers: list[PrivateRedis] = []
    try:
        for _attempt in range(5):  # the free port may be taken between the probe and the bind
            port = free_port()
            primary = PrivateRedis(
                tmp_path / f"primary-{port}",
                *("--port", str(port), "--bind", "127.0.0.1", "--repl-diskless-sync-delay", "0"),
            )
            servers.append(primary)
            try:
                await primary.start()
                break
            except AssertionError:
                primary.stop()
        else:
            raise AssertionError("the primary did not start")
        replica = PrivateRedis(tmp_path / "replica", "--port", "0", "--replicaof", "127.0.0.1", str(port))
        servers.append(replica)
        await replica.start()
        primary_client = redis.asyncio.Redis.from_url(primary.url)
        try:

            async def replica_online() -> bool:
                info = await primary_client.info("replication")
                return bool(info.get("connected_slaves") == 1 and info.get("slave0", {}).get("state") == "online")

            await poll(replica_online, "the replica online")
        finally:
            await primary_client.aclose()
        yield primary, replica
    finally:
        for server in servers:
            server.stop()


def make_store(url: str, **kwargs: Any) -> RedisStore:
    return RedisStore.from_url(url, prefix=PREFIX, check_server_on_first_use=False, **kwargs)


async def claim(store: RedisStore, record_id: str, owner: str) -> Any:
    return await store.claim(
        record_id, fingerprint=FP, fp_version=FP_VERSION, owner_token=owner, lease_ttl=30.0, retention=3600.0
    )


async def returns_only_after_the_replica_acknowledges(
    primary: PrivateRedis, replica: PrivateRedis, operation: Any
) -> Any:
    """Run ``operation`` with the replica frozen: it must still be waiting once its WAIT blocks on the primary."""
    watcher = redis.asyncio.Redis.from_url(primary.url)
    try:
        replica.freeze()
        task = asyncio.ensure_future(operation)

        async def wait_blocked() -> bool:
            assert not task.done(), "returned while the replica could not have acknowledged"
            return int((await watcher.info("clients"))["blocked_clients"]) >= 1

        await poll(wait_blocked, "the WAIT blocked on the primary")
        assert not task.done()
        replica.thaw()
        return await task
    finally:
        replica.thaw()
        await watcher.aclose()


# -- with a replica ---------------------------------------------------------------------------------------------


async def test_claim_and_completion_are_on_the_replica_as_soon_as_they_return(
    primary_and_replica: tuple[PrivateRedis, PrivateRedis],
) -> None:
    primary, replica = primary_and_replica
    store = make_store(primary.url, wait_replicas=1, wait_timeout=25.0, socket_timeout=30.0)
    on_replica = redis.asyncio.Redis.from_url(replica.url)
    try:
        claimed = await returns_only_after_the_replica_acknowledges(primary, replica, claim(store, "r1", "owner-a"))
        assert claimed.claimed
        copy = await on_replica.hgetall(record_key("r1"))
        assert copy[b"st"] == b"in_progress"
        assert copy[b"ow"] == b"owner-a"
        assert int(copy[b"fe"]) == claimed.record.fence

        completion = store.complete(
            "r1", owner_token="owner-a", fence=claimed.record.fence, response=RESPONSE, retention=3600.0
        )
        assert await returns_only_after_the_replica_acknowledges(primary, replica, completion)
        copy = await on_replica.hgetall(record_key("r1"))
        assert copy[b"st"] == b"completed"
        assert copy[b"bd"] == RESPONSE.body

        replay = await claim(store, "r1", "owner-b")
        assert not replay.claimed
        assert replay.record.state is State.COMPLETED
        assert store.replication_shortfalls == 0
    finally:
        await on_replica.aclose()
        await store.aclose()


async def test_more_replicas_than_acknowledge_is_a_shortfall(
    primary_and_replica: tuple[PrivateRedis, PrivateRedis],
) -> None:
    primary, replica = primary_and_replica
    store = make_store(primary.url, wait_replicas=2, wait_timeout=0.05, wait_shortfall="proceed")
    on_replica = redis.asyncio.Redis.from_url(replica.url)
    try:
        result = await claim(store, "r1", "owner-a")
        assert result.claimed  # "proceed": kept, as without WAIT
        assert store.replication_shortfalls == 1
        # The one replica there is gets the claim (whether or not it acknowledged within wait_timeout: under load
        # it may not have, and WAIT then counts 0; the shortfall is the same). Polled, not timed.

        async def replicated() -> bool:
            return bool(await on_replica.hget(record_key("r1"), "ow") == b"owner-a")

        await poll(replicated, "the claim on the replica")
    finally:
        await on_replica.aclose()
        await store.aclose()


# -- shortfalls (no replica) ----------------------------------------------------------------------------------------


async def test_a_claim_falling_short_fails_closed_and_gives_the_key_back(
    lone_primary: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(lone_primary.url, wait_replicas=1, wait_timeout=0.01)
    try:
        with caplog.at_level(logging.WARNING, logger="stalwart"), pytest.raises(StoreUnavailable, match="0 of 1"):
            await claim(store, "r1", "owner-a")
        assert await store.get("r1") is None  # released: a retry claims afresh, and its WAIT covers that write
        assert store.replication_shortfalls == 1
        assert "claim of r1… acknowledged by 0 of 1 replicas" in caplog.text
        with pytest.raises(StoreUnavailable):  # a retry with the same owner token claims afresh, and falls short
            await claim(store, "r1", "owner-a")
        assert store.replication_shortfalls == 2
        assert await store.get("r1") is None
    finally:
        await store.aclose()


async def test_a_claim_falling_short_proceeds_when_asked(
    lone_primary: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(lone_primary.url, wait_replicas=1, wait_timeout=0.01, wait_shortfall="proceed")
    try:
        with caplog.at_level(logging.WARNING, logger="stalwart"):
            result = await claim(store, "r1", "owner-a")
        assert result.claimed
        assert result.record.state is State.IN_PROGRESS
        assert store.replication_shortfalls == 1
        assert "acknowledged by 0 of 1 replicas" in caplog.text
    finally:
        await store.aclose()


async def test_a_completion_falling_short_is_done_and_counted(lone_primary: PrivateRedis) -> None:
    store = make_store(lone_primary.url, wait_replicas=1, wait_timeout=0.01, wait_shortfall="proceed")
    try:
        claimed = (await claim(store, "r1", "owner-a")).record
        done = await store.complete("r1", owner_token="owner-a", fence=claimed.fence, response=RESPONSE, retention=60)
        assert done  # the handler ran: its response is stored and delivered, never turned into a failure
        assert store.replication_shortfalls == 2
        record = await store.get("r1")
        assert record is not None
        assert record.state is State.COMPLETED
        # A CAS that fails writes nothing: its WAIT reply is not a shortfall.
        assert not await store.complete("r1", owner_token="other", fence=claimed.fence, response=RESPONSE, retention=60)
        # Nor is a claim that takes nothing (a replay).
        replay = await claim(store, "r1", "owner-b")
        assert not replay.claimed
        assert replay.record.body == RESPONSE.body
        assert store.replication_shortfalls == 2
    finally:
        await store.aclose()


async def test_shortfall_warnings_are_rate_limited(
    lone_primary: PrivateRedis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(redis_store_module, "_monotonic", lambda: now[0])
    store = make_store(lone_primary.url, wait_replicas=1, wait_timeout=0.01, wait_shortfall="proceed")
    try:
        with caplog.at_level(logging.WARNING, logger="stalwart"):
            await claim(store, "r1", "owner-a")
            now[0] += 9.9
            await claim(store, "r2", "owner-a")
            now[0] += 0.1
            await claim(store, "r3", "owner-a")
        lines = [r.getMessage() for r in caplog.records if "replicas" in r.getMessage()]
        assert len(lines) == 2
        assert "r1…" in lines[0]
        assert "r3…" in lines[1]
        assert "(3 shortfalls so far)" in lines[1]
        assert store.replication_shortfalls == 3
    finally:
        await store.aclose()


async def test_through_the_middleware_a_short_claim_is_503_and_the_handler_never_runs(
    lone_primary: PrivateRedis,
) -> None:
    store = make_store(lone_primary.url, wait_replicas=1, wait_timeout=0.01)
    probe = Probe()
    mw = wrap(make_app(probe), store)
    try:
        async with client(mw) as c:
            answer = await c.post("/payments", json={"amount": 1}, headers=headers())
        assert answer.status_code == 503
        assert probe.calls == 0
        stats = mw.statistics()
        assert stats["store_unavailable_503"] == 1
        assert stats["replication_shortfalls"] == 2  # the claim and the middleware's one retry
        raw = redis.asyncio.Redis.from_url(lone_primary.url)
        try:
            assert await raw.keys(record_key("*")) == []  # both claims were given back
        finally:
            await raw.aclose()
    finally:
        await store.aclose()


# -- scripts lost by the server ---------------------------------------------------------------------------------


@pytest.mark.parametrize("wait_replicas", [0, 1])
async def test_scripts_are_loaded_again_after_script_flush(lone_primary: PrivateRedis, wait_replicas: int) -> None:
    store = make_store(lone_primary.url, wait_replicas=wait_replicas, wait_timeout=0.01, wait_shortfall="proceed")
    raw = redis.asyncio.Redis.from_url(lone_primary.url)
    try:
        first = (await claim(store, "r1", "owner-a")).record
        await raw.script_flush()
        assert await store.complete("r1", owner_token="owner-a", fence=first.fence, response=RESPONSE, retention=60)
        await raw.script_flush()
        replay = await claim(store, "r1", "owner-b")
        assert replay.record.state is State.COMPLETED
    finally:
        await raw.aclose()
        await store.aclose()


# -- settings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "parameter"),
    [
        ({"wait_replicas": -1}, ValueError, "wait_replicas"),
        ({"wait_replicas": 1.0}, TypeError, "wait_replicas"),
        ({"wait_replicas": True}, TypeError, "wait_replicas"),
        ({"wait_timeout": 0}, ValueError, "wait_timeout"),
        ({"wait_timeout": -0.5}, ValueError, "wait_timeout"),
        ({"wait_timeout": float("nan")}, ValueError, "wait_timeout"),
        ({"wait_timeout": float("inf")}, ValueError, "wait_timeout"),
        ({"wait_shortfall": "retry"}, ValueError, "wait_shortfall"),
    ],
)
def test_invalid_wait_settings_are_refused(kwargs: dict[str, Any], error: type[Exception], parameter: str) -> None:
    with pytest.raises(error, match=parameter):
        RedisStore(redis.asyncio.Redis(), **kwargs)


def test_wait_timeout_must_be_below_the_socket_timeout() -> None:
    with pytest.raises(ValueError, match="wait_timeout"):
        RedisStore.from_url("redis://127.0.0.1:1/0", wait_replicas=1, wait_timeout=2.0, socket_timeout=2.0)
    RedisStore.from_url("redis://127.0.0.1:1/0", wait_replicas=0, wait_timeout=5.0, socket_timeout=2.0)  # unused


def test_wait_replicas_needs_a_plain_client() -> None:
    cluster = redis.asyncio.RedisCluster(host="127.0.0.1", port=1)
    with pytest.raises(ValueError, match="wait_replicas"):
        RedisStore(cluster, wait_replicas=1)
    assert RedisStore(cluster).wait_replicas == 0
