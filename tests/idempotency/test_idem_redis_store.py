"""RedisStore beyond the shared contract: TTLs, script atomicity, key slots, indexes, errors (spec §2.15, §2.16.3).

Runs against the real Redis (``REDIS_URL``); every test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
from idem_durable import claim_from_processes, redis_store
from redis.crc import key_slot

from stalwart import StoreUnavailable
from stalwart.idempotency import FP_VERSION, Outcome, RecordDecodeError, State, StoredResponse
from stalwart.idempotency.stores.redis import RedisStore

pytestmark = pytest.mark.integration

FP = b"\x01" * 32
RESPONSE = StoredResponse(Outcome.RESPONSE, 200, ((b"content-type", b"application/octet-stream"),), bytes(range(256)))


def rid() -> str:
    return secrets.token_hex(32)


def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RedisStore]:
    s = redis_store(request)
    yield s
    await s.aclose()


async def claim(s: RedisStore, record_id: str, owner: str, **kw: Any) -> Any:
    args: dict[str, Any] = {"lease_ttl": 30.0, "retention": 3600.0, **kw}
    return await s.claim(record_id, fingerprint=FP, fp_version=FP_VERSION, owner_token=owner, **args)


def record_key(s: RedisStore, record_id: str) -> str:
    return f"{{{s.prefix}}}:r:{record_id}"


async def test_every_write_sets_the_ttl_to_expires_at(store: RedisStore) -> None:
    r, a = rid(), token()
    rec = (await claim(store, r, a, lease_ttl=30.0, retention=3600.0)).record
    key = record_key(store, r)

    async def ttl_matches_expires_at() -> None:
        current = await store.get(r)
        assert current is not None
        expire_ms = await store.client.pexpiretime(key)
        # PEXPIREAT is expires_at rounded up to the millisecond, never the lease alone.
        assert current.expires_at * 1000 <= expire_ms <= current.expires_at * 1000 + 1

    await ttl_matches_expires_at()
    assert rec.expires_at - rec.lease_expires_at == pytest.approx(3600.0)
    assert await store.heartbeat(r, owner_token=a, fence=rec.fence, lease_ttl=60.0, retention=7200.0)
    await ttl_matches_expires_at()
    assert await store.abandon(r, owner_token=a, fence=rec.fence)
    await ttl_matches_expires_at()
    assert await store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=120.0)
    await ttl_matches_expires_at()
    done = await store.get(r)
    assert done is not None
    assert done.completed_at is not None
    assert done.expires_at == pytest.approx(done.completed_at + 120.0)
    assert done.body == RESPONSE.body


async def test_a_hundred_concurrent_claims_have_exactly_one_winner(request: pytest.FixtureRequest) -> None:
    # Two stores (two clients and connection pools) on one prefix: the decision is the server's, not the process's.
    first = redis_store(request)
    second = RedisStore.from_url(request.getfixturevalue("redis_url"), prefix=first.prefix)
    try:
        r = rid()
        owners = [token() for _ in range(100)]
        results = await asyncio.gather(*(claim(first if i % 2 else second, r, o) for i, o in enumerate(owners)))
        winners = [x for x in results if x.claimed]
        assert len(winners) == 1
        assert {x.record.owner_token for x in results} == {winners[0].record.owner_token}
        assert {x.record.fence for x in results} == {winners[0].record.fence}
    finally:
        await first.aclose()
        await second.aclose()


async def test_concurrent_reclaims_of_an_expired_lease_have_exactly_one_winner(store: RedisStore) -> None:
    r, a = rid(), token()
    old = (await claim(store, r, a, lease_ttl=0.01)).record
    await asyncio.sleep(0.05)  # the lease lapses on the server's clock
    results = await asyncio.gather(*(claim(store, r, token(), reclaim=True) for _ in range(100)))
    winners = [x for x in results if x.claimed]
    assert len(winners) == 1
    new = winners[0].record
    assert (new.attempt, new.state) == (2, State.IN_PROGRESS)
    assert new.fence > old.fence
    assert all(x.record.fence == new.fence for x in results)


async def test_concurrent_strict_claims_abandon_once(store: RedisStore) -> None:
    r, a = rid(), token()
    old = (await claim(store, r, a, lease_ttl=0.01)).record
    await asyncio.sleep(0.05)
    results = await asyncio.gather(*(claim(store, r, token()) for _ in range(50)))
    assert not any(x.claimed for x in results)
    assert {(x.record.state, x.record.owner_token, x.record.fence) for x in results} == {
        (State.ABANDONED, a, old.fence)
    }
    assert [x.record_id for x in await store.list_abandoned()] == [r]


@pytest.mark.parametrize("shards", [1, 4])
async def test_every_script_touches_a_single_slot(request: pytest.FixtureRequest, shards: int) -> None:
    s = redis_store(request, shards=shards)
    calls: list[tuple[str, tuple[str, ...]]] = []
    names = ["_claim", "_heartbeat", "_complete", "_release", "_abandon", "_get", "_purge_one", "_abandoned_one"]

    # Every script call goes through _run (one EVALSHA) or _batch (a pipeline of them): record the keys there.
    by_script = {id(getattr(s, name)): name for name in names}
    run, batch = s._run, s._batch

    async def recording_run(script: Any, keys: list[str], args: list[Any]) -> Any:
        calls.append((by_script[id(script)], tuple(keys)))
        return await run(script, keys, args)

    async def recording_batch(script: Any, batch_calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        calls.extend((by_script[id(script)], tuple(keys)) for keys, _ in batch_calls)
        return await batch(script, batch_calls)

    s._run = recording_run  # type: ignore[method-assign]
    s._batch = recording_batch  # type: ignore[method-assign]
    try:
        for _ in range(12):
            r, a = rid(), token()
            # A lease long enough that no step depends on timing; only the retention of the completed record is
            # short, so that purge has something to remove.
            rec = (await claim(s, r, a, lease_ttl=30.0, retention=30.0)).record
            await s.heartbeat(r, owner_token=a, fence=rec.fence, lease_ttl=30.0, retention=30.0)
            await s.abandon(r, owner_token=a, fence=rec.fence)
            await s.list_abandoned()
            await s.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=0.01)
            await s.get(r)
        await asyncio.sleep(0.05)
        await s.purge()
        r, a = rid(), token()
        rec = (await claim(s, r, a)).record
        await s.release(r, owner_token=a, fence=rec.fence)
    finally:
        await s.aclose()
    scripts_with_keys = [keys for _, keys in calls if keys]
    # Every per-record transition ran (12 records + the released one); counts of the index scripts depend on what
    # the indexes hold, so only their slots are checked.
    per_record = [name for name, keys in calls if keys and name in {"_claim", "_heartbeat", "_abandon", "_complete"}]
    assert per_record.count("_claim") == 13
    assert per_record.count("_heartbeat") == per_record.count("_abandon") == per_record.count("_complete") == 12
    assert any(name == "_release" and keys for name, keys in calls)
    for keys in scripts_with_keys:
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    used_slots = {key_slot(keys[0].encode()) for keys in scripts_with_keys}
    if shards == 1:
        assert len(used_slots) == 1
    else:
        # Records pick a shard by hash: 13 random records need not cover all 4 (about a 1 in 10 chance), but they
        # cannot all land in one (about 1 in 10**7).
        assert 2 <= len(used_slots) <= shards


async def test_sharded_fences_increase_per_record_and_never_repeat(request: pytest.FixtureRequest) -> None:
    s = redis_store(request, shards=4)
    try:
        fences: list[int] = []
        per_record: dict[str, list[int]] = {}
        records = [rid() for _ in range(8)]
        for _ in range(3):
            for r in records:
                a = token()
                rec = (await claim(s, r, a)).record
                assert await s.release(r, owner_token=a, fence=rec.fence)
                fences.append(rec.fence)
                per_record.setdefault(r, []).append(rec.fence)
        assert len(set(fences)) == len(fences)
        for seen in per_record.values():
            assert seen == sorted(seen)
            assert len(set(seen)) == len(seen)
    finally:
        await s.aclose()


async def test_keys_are_cleaned_up_by_release_expiry_and_purge(store: RedisStore) -> None:
    fence_key = f"{{{store.prefix}}}:fence"
    r1, r2, a = rid(), rid(), token()
    rec = (await claim(store, r1, a)).record
    assert await store.release(r1, owner_token=a, fence=rec.fence)
    rec = (await claim(store, r2, a, lease_ttl=0.01, retention=0.01)).record
    await store.abandon(r2, owner_token=a, fence=rec.fence)
    await asyncio.sleep(0.05)
    assert await store.purge() == 1
    assert await store.purge() == 0
    keys = {k.decode() async for k in store.client.scan_iter(match=f"{{{store.prefix}}}*")}
    assert keys == {fence_key}  # only the counter survives, so fences keep increasing
    assert await store.list_abandoned() == []


async def test_purge_counts_records_redis_already_expired(store: RedisStore) -> None:
    r, a = rid(), token()
    rec = (await claim(store, r, a, lease_ttl=0.01, retention=0.01)).record
    await store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=0.01)
    await asyncio.sleep(0.05)
    await store.client.delete(record_key(store, r))  # as Redis's own expiry would
    assert await store.purge() == 1
    assert await store.purge() == 0


async def test_purge_keeps_live_records_and_fixes_their_index_entry(store: RedisStore) -> None:
    r, a = rid(), token()
    await claim(store, r, a, lease_ttl=3600.0, retention=3600.0)
    # A stale index score (say, from an older write) must not make purge delete a live record.
    await store.client.zadd(f"{{{store.prefix}}}:exp", {r: 1})
    assert await store.purge() == 0
    live = await store.get(r)
    assert live is not None
    assert live.state is State.IN_PROGRESS
    assert await store.client.zscore(f"{{{store.prefix}}}:exp", r) == pytest.approx(live.expires_at * 1e6)


async def test_old_index_entries_are_trimmed_by_claims(request: pytest.FixtureRequest) -> None:
    s = redis_store(request, index_grace=0.0)
    try:
        r, a = rid(), token()
        await claim(s, r, a, lease_ttl=0.01, retention=0.01)
        await asyncio.sleep(0.05)
        await claim(s, rid(), token())
        assert await s.client.zscore(f"{{{s.prefix}}}:exp", r) is None
    finally:
        await s.aclose()


async def test_list_abandoned_drops_entries_of_vanished_records(store: RedisStore) -> None:
    gone, kept = rid(), rid()
    for r in (gone, kept):
        a = token()
        rec = (await claim(store, r, a)).record
        await store.abandon(r, owner_token=a, fence=rec.fence)
    await store.client.delete(record_key(store, gone))
    assert [x.record_id for x in await store.list_abandoned()] == [kept]
    assert await store.client.zcard(f"{{{store.prefix}}}:abandoned") == 1


@pytest.mark.parametrize(("field", "value"), [("sv", b"99"), ("st", b"bogus"), ("oc", b"bogus"), ("hd", b"\x00")])
async def test_an_undecodable_record_raises_record_decode_error(store: RedisStore, field: str, value: bytes) -> None:
    r, a = rid(), token()
    await claim(store, r, a)
    await store.client.hset(record_key(store, r), field, value)
    with pytest.raises(RecordDecodeError):
        await store.get(r)
    with pytest.raises(RecordDecodeError):
        await claim(store, r, token())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("check_first", [True, False])
async def test_an_unreachable_server_raises_store_unavailable(check_first: bool) -> None:
    s = RedisStore.from_url(
        f"redis://127.0.0.1:{closed_port()}/0", check_server_on_first_use=check_first, socket_timeout=1.0
    )
    try:
        with pytest.raises(StoreUnavailable) as info:
            await claim(s, rid(), token())
        assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
        for call in (s.get(rid()), s.now(), s.purge(), s.list_abandoned(), s.release(rid(), owner_token="a", fence=1)):
            with pytest.raises(StoreUnavailable):
                await call
    finally:
        await s.aclose()


async def test_a_client_that_decodes_responses_is_refused(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisStore(client)
    finally:
        await client.aclose()


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b"])
def test_invalid_prefixes_are_refused(prefix: str) -> None:
    client = redis.asyncio.Redis()
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(client, prefix=prefix)


async def test_an_existing_client_is_left_open(redis_url: str, unique_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        s = RedisStore(client, prefix=unique_prefix, check_server_on_first_use=False)
        r, a = rid(), token()
        rec = (await claim(s, r, a)).record
        assert await s.release(r, owner_token=a, fence=rec.fence)
        await s.aclose()
        assert await client.ping()
        await client.delete(f"{{{unique_prefix}}}:fence")
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_claims_from_several_processes_have_one_winner_per_record(store: RedisStore, redis_url: str) -> None:
    wins = await claim_from_processes("redis", redis_url, store.prefix, processes=4, records=25)
    assert sorted(record for record, _, _ in wins) == list(range(25))  # exactly one winner per record
    fences = [fence for _, _, fence in wins]
    assert len(set(fences)) == len(fences)
