"""The IdempotencyStore contract, run against every store (``harness`` is parametrised in conftest.py)."""

from __future__ import annotations

import asyncio
import secrets

from idem_harness import Harness

from stalwart.idempotency import FP_VERSION, ClaimResult, Outcome, State, StoredResponse

FP = b"\x01" * 32
OTHER_FP = b"\x02" * 32
LONG = 3600.0
RETENTION = 86_400.0
RESPONSE = StoredResponse(
    Outcome.RESPONSE,
    201,
    ((b"location", b"/payments/1"), (b"x-dup", b"a"), (b"x-dup", b"b"), (b"x-bin", b"\xff\x00")),
    b"\x00\xffbody",
)


def rid() -> str:
    return secrets.token_hex(32)


def token() -> str:
    return secrets.token_hex(16)


async def claim(
    h: Harness,
    record_id: str,
    owner: str,
    *,
    fp: bytes = FP,
    lease: float = LONG,
    retention: float = RETENTION,
    reclaim: bool = False,
) -> ClaimResult:
    return await h.store.claim(
        record_id,
        fingerprint=fp,
        fp_version=FP_VERSION,
        owner_token=owner,
        lease_ttl=lease,
        retention=retention,
        reclaim=reclaim,
    )


async def test_first_claim_wins_and_others_see_the_record(harness: Harness) -> None:
    r, a, b = rid(), token(), token()
    first = await claim(harness, r, a)
    assert first.claimed
    rec = first.record
    assert (rec.record_id, rec.state, rec.owner_token, rec.attempt, rec.fingerprint) == (r, State.IN_PROGRESS, a, 1, FP)
    assert rec.fence >= 1
    assert rec.lease_expires_at > first.now
    assert rec.expires_at >= rec.lease_expires_at + RETENTION - 1
    second = await claim(harness, r, b)
    assert not second.claimed
    assert (second.record.owner_token, second.record.fence) == (a, rec.fence)
    assert second.record.lease_remaining(second.now) > LONG - 60


async def test_repeated_claim_with_the_same_token_is_claimed_again(harness: Harness) -> None:
    r, a = rid(), token()
    first = await claim(harness, r, a)
    again = await claim(harness, r, a)
    assert again.claimed
    assert again.record.fence == first.record.fence
    assert again.record.attempt == 1


async def test_another_fingerprint_never_changes_the_record(harness: Harness) -> None:
    r, a, b = rid(), token(), token()
    lease = harness.short_lease
    first = await claim(harness, r, a, lease=lease)
    mismatch = await claim(harness, r, b, fp=OTHER_FP)
    assert not mismatch.claimed
    assert mismatch.record.fingerprint == FP
    await harness.pass_time(lease * 2)
    for reclaim in (False, True):
        late = await claim(harness, r, b, fp=OTHER_FP, reclaim=reclaim)
        assert not late.claimed
        assert late.record.state is State.IN_PROGRESS  # not abandoned, not reclaimed
        assert late.record.fence == first.record.fence
    # The same owner with another fingerprint is not "its own claim" either.
    assert not (await claim(harness, r, a, fp=OTHER_FP)).claimed


async def test_concurrent_claims_have_exactly_one_winner(harness: Harness) -> None:
    r = rid()
    results = await asyncio.gather(*(claim(harness, r, token()) for _ in range(20)))
    winners = [x for x in results if x.claimed]
    assert len(winners) == 1
    owner = winners[0].record.owner_token
    assert all(x.record.owner_token == owner for x in results)


async def test_heartbeat_is_a_cas(harness: Harness) -> None:
    r, a = rid(), token()
    rec = (await claim(harness, r, a, lease=100.0)).record
    await harness.pass_time(0.01)
    assert await harness.store.heartbeat(r, owner_token=a, fence=rec.fence, lease_ttl=LONG, retention=RETENTION)
    renewed = await harness.store.get(r)
    assert renewed is not None
    assert renewed.lease_expires_at > rec.lease_expires_at
    assert renewed.expires_at >= rec.expires_at
    assert not await harness.store.heartbeat(r, owner_token=token(), fence=rec.fence, lease_ttl=1, retention=1)
    assert not await harness.store.heartbeat(r, owner_token=a, fence=rec.fence + 1, lease_ttl=1, retention=1)
    assert not await harness.store.heartbeat(rid(), owner_token=a, fence=rec.fence, lease_ttl=1, retention=1)


async def test_complete_stores_the_exact_response_once(harness: Harness) -> None:
    r, a = rid(), token()
    rec = (await claim(harness, r, a)).record
    assert not await harness.store.complete(
        r, owner_token=token(), fence=rec.fence, response=RESPONSE, retention=RETENTION
    )
    assert await harness.store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=RETENTION)
    done = await harness.store.get(r)
    assert done is not None
    assert (done.state, done.outcome, done.status, done.headers, done.body, done.body_omitted) == (
        State.COMPLETED,
        Outcome.RESPONSE,
        201,
        RESPONSE.headers,
        RESPONSE.body,
        False,
    )
    assert done.completed_at is not None
    assert done.expires_at >= done.completed_at + RETENTION - 1
    other = StoredResponse(Outcome.RESPONSE, 500, (), b"other")
    assert not await harness.store.complete(r, owner_token=a, fence=rec.fence, response=other, retention=RETENTION)
    seen = await claim(harness, r, token(), reclaim=True)
    assert not seen.claimed
    assert (seen.record.status, seen.record.body) == (201, RESPONSE.body)


async def test_omitted_bodies_and_exceptions_are_stored(harness: Harness) -> None:
    r, a = rid(), token()
    rec = (await claim(harness, r, a)).record
    response = StoredResponse(Outcome.EXCEPTION, 500, ((b"content-type", b"application/problem+json"),), b"x", True)
    assert await harness.store.complete(r, owner_token=a, fence=rec.fence, response=response, retention=RETENTION)
    done = await harness.store.get(r)
    assert done is not None
    assert (done.outcome, done.status, done.body, done.body_omitted) == (Outcome.EXCEPTION, 500, b"", True)


async def test_release_makes_the_key_new_with_a_higher_fence(harness: Harness) -> None:
    r, a, b = rid(), token(), token()
    rec = (await claim(harness, r, a)).record
    assert not await harness.store.release(r, owner_token=b, fence=rec.fence)
    assert await harness.store.release(r, owner_token=a, fence=rec.fence)
    assert await harness.store.get(r) is None
    assert not await harness.store.release(r, owner_token=a, fence=rec.fence)
    again = await claim(harness, r, b)
    assert again.claimed
    assert again.record.fence > rec.fence
    assert again.record.attempt == 1


async def test_completed_records_cannot_be_released_or_abandoned(harness: Harness) -> None:
    r, a = rid(), token()
    rec = (await claim(harness, r, a)).record
    await harness.store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=RETENTION)
    assert not await harness.store.release(r, owner_token=a, fence=rec.fence)
    assert not await harness.store.abandon(r, owner_token=a, fence=rec.fence)
    done = await harness.store.get(r)
    assert done is not None
    assert done.state is State.COMPLETED


async def test_owner_abandon_then_late_completion(harness: Harness) -> None:
    r, a = rid(), token()
    rec = (await claim(harness, r, a)).record
    assert not await harness.store.abandon(r, owner_token=token(), fence=rec.fence)
    assert await harness.store.abandon(r, owner_token=a, fence=rec.fence)
    seen = await claim(harness, r, token())
    assert not seen.claimed
    assert seen.record.state is State.ABANDONED
    assert [x.record_id for x in await harness.store.list_abandoned()] == [r]
    assert not await harness.store.heartbeat(r, owner_token=a, fence=rec.fence, lease_ttl=1, retention=1)
    assert await harness.store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=RETENTION)
    done = await harness.store.get(r)
    assert done is not None
    assert done.state is State.COMPLETED
    assert await harness.store.list_abandoned() == []


async def test_expired_lease_strict_abandons_atomically(harness: Harness) -> None:
    r, a, b = rid(), token(), token()
    lease = harness.short_lease
    rec = (await claim(harness, r, a, lease=lease)).record
    await harness.pass_time(lease * 2)
    seen = await claim(harness, r, b)
    assert not seen.claimed
    assert (seen.record.state, seen.record.owner_token, seen.record.fence) == (State.ABANDONED, a, rec.fence)
    again = await claim(harness, r, token())
    assert again.record.state is State.ABANDONED
    # T3: the original owner's late completion upgrades the record.
    assert await harness.store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=RETENTION)
    done = await claim(harness, r, token())
    assert done.record.state is State.COMPLETED


async def test_expired_lease_reclaim_fences_out_the_old_owner(harness: Harness) -> None:
    r, a, b = rid(), token(), token()
    lease = harness.short_lease
    old = (await claim(harness, r, a, lease=lease)).record
    await harness.pass_time(lease * 2)
    taken = await claim(harness, r, b, reclaim=True)
    assert taken.claimed
    new = taken.record
    assert (new.owner_token, new.attempt, new.state) == (b, 2, State.IN_PROGRESS)
    assert new.fence > old.fence
    assert new.lease_remaining(taken.now) > LONG - 60
    # The stale owner's late writes are rejected by the CAS.
    assert not await harness.store.heartbeat(r, owner_token=a, fence=old.fence, lease_ttl=LONG, retention=RETENTION)
    assert not await harness.store.complete(r, owner_token=a, fence=old.fence, response=RESPONSE, retention=RETENTION)
    assert not await harness.store.release(r, owner_token=a, fence=old.fence)
    assert not await harness.store.abandon(r, owner_token=a, fence=old.fence)
    assert await harness.store.complete(r, owner_token=b, fence=new.fence, response=RESPONSE, retention=RETENTION)


async def test_reclaim_mode_takes_over_an_abandoned_record(harness: Harness) -> None:
    r, a = rid(), token()
    old = (await claim(harness, r, a)).record
    await harness.store.abandon(r, owner_token=a, fence=old.fence)
    assert not (await claim(harness, r, token())).claimed
    taken = await claim(harness, r, token(), reclaim=True)
    assert taken.claimed
    assert taken.record.fence > old.fence
    assert taken.record.attempt == 2


async def test_live_lease_is_never_reclaimed(harness: Harness) -> None:
    r, a = rid(), token()
    await claim(harness, r, a)
    seen = await claim(harness, r, token(), reclaim=True)
    assert not seen.claimed
    assert seen.record.owner_token == a


async def test_fences_strictly_increase_across_records_and_purges(harness: Harness) -> None:
    fences = []
    retention = harness.short_lease
    for _ in range(5):
        r, a = rid(), token()
        rec = (await claim(harness, r, a, lease=retention, retention=retention)).record
        fences.append(rec.fence)
        await harness.store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=retention)
    await harness.pass_time(retention * 2)
    await harness.store.purge()
    fences.append((await claim(harness, rid(), token())).record.fence)
    assert fences == sorted(set(fences))


async def test_retention_expiry_makes_the_key_new(harness: Harness) -> None:
    r, a = rid(), token()
    retention = harness.short_lease
    rec = (await claim(harness, r, a, lease=retention, retention=retention)).record
    await harness.store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=retention)
    assert await harness.store.get(r) is not None
    await harness.pass_time(retention * 2)
    assert await harness.store.get(r) is None
    again = await claim(harness, r, token(), fp=OTHER_FP)
    assert again.claimed
    assert again.record.fence > rec.fence
    assert again.record.attempt == 1
    assert again.record.fingerprint == OTHER_FP


async def test_purge_removes_only_expired_records(harness: Harness) -> None:
    short = harness.short_lease
    done_r, live_r, lapsed_r, kept_r = rid(), rid(), rid(), rid()
    a = token()
    rec = (await claim(harness, done_r, a, lease=short, retention=short)).record
    await harness.store.complete(done_r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=short)
    await claim(harness, live_r, token(), lease=LONG, retention=short)  # live in progress, short retention
    await claim(harness, lapsed_r, token(), lease=short, retention=RETENTION)  # lease lapses, retention long
    b = token()
    kept = (await claim(harness, kept_r, b, lease=short, retention=short)).record
    await harness.store.complete(kept_r, owner_token=b, fence=kept.fence, response=RESPONSE, retention=RETENTION)
    await harness.pass_time(short * 3)
    purged = await harness.store.purge()
    assert purged == 1
    assert await harness.store.get(done_r) is None
    live = await harness.store.get(live_r)
    assert live is not None
    assert live.state is State.IN_PROGRESS
    assert await harness.store.get(lapsed_r) is not None
    assert await harness.store.get(kept_r) is not None
    assert await harness.store.purge() == 0


async def test_purge_is_batched(harness: Harness) -> None:
    short = harness.short_lease
    for _ in range(5):
        r, a = rid(), token()
        rec = (await claim(harness, r, a, lease=short, retention=short)).record
        await harness.store.release(r, owner_token=a, fence=rec.fence)
        rec = (await claim(harness, r, a, lease=short, retention=short)).record
        await harness.store.complete(r, owner_token=a, fence=rec.fence, response=RESPONSE, retention=short)
    await harness.pass_time(short * 2)
    assert await harness.store.purge(limit=2) == 2
    assert await harness.store.purge(limit=10) == 3


async def test_store_clock_and_secret(harness: Harness) -> None:
    before = await harness.store.now()
    await harness.pass_time(0.01)
    assert await harness.store.now() >= before
    secret = await harness.store.default_secret()
    if secret is not None:
        assert len(secret) >= 32
        assert await harness.store.default_secret() == secret
