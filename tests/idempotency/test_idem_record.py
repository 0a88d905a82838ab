"""The record state machine (spec §2.7), outcome classification (§2.9) and header encoding: tables and properties."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart.idempotency import Outcome, Record, RecordDecodeError, State, StoredResponse
from stalwart.idempotency._record import (
    ClaimAction,
    apply_abandon,
    apply_complete,
    apply_heartbeat,
    apply_release,
    classify_outcome,
    decide_claim,
    decode_headers,
    encode_headers,
    is_expired,
    new_record,
    reclaim_record,
)

FP = b"f" * 32
OTHER_FP = b"g" * 32
RESPONSE = StoredResponse(Outcome.RESPONSE, 201, ((b"location", b"/p/1"),), b"{}")


def rec(state: State = State.IN_PROGRESS, *, lease: float = 30.0, expires: float = 1000.0, **kw: object) -> Record:
    base = new_record(
        "r", fingerprint=FP, fp_version=1, owner_token="A", fence=7, now=0.0, lease_ttl=lease, retention=expires - lease
    )
    return replace(base, state=state, **kw)  # type: ignore[arg-type]


def decide(
    current: Record | None, *, now: float = 10.0, owner: str = "B", fp: bytes = FP, reclaim: bool = False
) -> ClaimAction:
    return decide_claim(current, fingerprint=fp, fp_version=1, owner_token=owner, now=now, reclaim=reclaim)


@pytest.mark.parametrize(
    ("current", "now", "owner", "fp", "reclaim", "action"),
    [
        (None, 10.0, "B", FP, False, ClaimAction.INSERT),
        (rec(), 10.0, "B", FP, False, ClaimAction.NONE),  # live lease: report it
        (rec(), 10.0, "A", FP, False, ClaimAction.OWN),  # repeated claim with our token
        (rec(), 30.0, "B", FP, False, ClaimAction.NONE),  # lease_expires_at == now is still live
        (rec(), 31.0, "B", FP, False, ClaimAction.ABANDON),
        (rec(), 31.0, "B", FP, True, ClaimAction.RECLAIM),
        (rec(), 31.0, "B", OTHER_FP, True, ClaimAction.NONE),  # mismatch never changes the record
        (rec(), 10.0, "A", OTHER_FP, False, ClaimAction.NONE),
        (rec(State.COMPLETED), 31.0, "B", FP, True, ClaimAction.NONE),
        (rec(State.ABANDONED), 31.0, "B", FP, False, ClaimAction.NONE),
        (rec(State.ABANDONED), 31.0, "B", FP, True, ClaimAction.RECLAIM),
        (rec(State.COMPLETED), 1000.0, "B", OTHER_FP, False, ClaimAction.INSERT),  # past retention: absent
        (rec(), 1000.0, "B", FP, False, ClaimAction.INSERT),
        (replace(rec(), fp_version=0), 10.0, "A", FP, False, ClaimAction.NONE),  # another fingerprint version
    ],
)
def test_decide_claim(
    current: Record | None, now: float, owner: str, fp: bytes, reclaim: bool, action: ClaimAction
) -> None:
    assert decide(current, now=now, owner=owner, fp=fp, reclaim=reclaim) is action


def test_new_and_reclaimed_records() -> None:
    r = rec(lease=30.0, expires=1030.0)
    assert (r.state, r.attempt, r.fence, r.lease_expires_at, r.expires_at) == (State.IN_PROGRESS, 1, 7, 30.0, 1030.0)
    again = reclaim_record(r, owner_token="B", fence=9, now=40.0, lease_ttl=30.0, retention=1000.0)
    assert (again.owner_token, again.fence, again.attempt) == ("B", 9, 2)
    assert (again.lease_expires_at, again.expires_at, again.created_at) == (70.0, 1070.0, 0.0)


def test_cas_transitions_refuse_other_owners_and_fences() -> None:
    r = rec()
    for owner, fence in (("B", 7), ("A", 8), ("A", 6)):
        assert apply_heartbeat(r, owner_token=owner, fence=fence, now=1, lease_ttl=30, retention=100) is None
        assert apply_complete(r, owner_token=owner, fence=fence, response=RESPONSE, now=1, retention=100) is None
        assert apply_release(r, owner_token=owner, fence=fence, now=1) is False
        assert apply_abandon(r, owner_token=owner, fence=fence, now=1) is None
    assert apply_heartbeat(None, owner_token="A", fence=7, now=1, lease_ttl=30, retention=100) is None
    assert apply_release(None, owner_token="A", fence=7, now=1) is False


def test_heartbeat_extends_lease_and_retention() -> None:
    r = rec(lease=30.0, expires=130.0)
    beat = apply_heartbeat(r, owner_token="A", fence=7, now=20.0, lease_ttl=30.0, retention=100.0)
    assert beat is not None
    assert (beat.lease_expires_at, beat.expires_at, beat.updated_at) == (50.0, 150.0, 20.0)
    assert apply_heartbeat(rec(State.ABANDONED), owner_token="A", fence=7, now=1, lease_ttl=1, retention=1) is None


def test_complete_from_in_progress_and_late_from_abandoned_but_never_over_completed() -> None:
    done = apply_complete(rec(), owner_token="A", fence=7, response=RESPONSE, now=50.0, retention=100.0)
    assert done is not None
    assert (done.state, done.status, done.body, done.completed_at, done.expires_at) == (
        State.COMPLETED,
        201,
        b"{}",
        50.0,
        150.0,
    )
    late = apply_complete(rec(State.ABANDONED), owner_token="A", fence=7, response=RESPONSE, now=60.0, retention=1)
    assert late is not None
    assert late.state is State.COMPLETED
    assert apply_complete(done, owner_token="A", fence=7, response=RESPONSE, now=60.0, retention=1) is None
    big = replace(RESPONSE, body=b"x" * 9, body_omitted=True)
    omitted = apply_complete(rec(), owner_token="A", fence=7, response=big, now=1, retention=1)
    assert omitted is not None
    assert (omitted.body, omitted.body_omitted) == (b"", True)


def test_release_and_abandon_states() -> None:
    assert apply_release(rec(), owner_token="A", fence=7, now=1)
    assert apply_release(rec(State.ABANDONED), owner_token="A", fence=7, now=1)
    assert not apply_release(rec(State.COMPLETED), owner_token="A", fence=7, now=1)
    gone = apply_abandon(rec(), owner_token="A", fence=7, now=5.0)
    assert gone is not None
    assert (gone.state, gone.updated_at, gone.expires_at) == (State.ABANDONED, 5.0, 1000.0)
    assert apply_abandon(rec(State.COMPLETED), owner_token="A", fence=7, now=5.0) is None


def test_records_past_retention_are_absent_for_every_cas() -> None:
    r = rec(lease=30.0, expires=100.0)
    assert apply_heartbeat(r, owner_token="A", fence=7, now=100.0, lease_ttl=30, retention=100) is None
    assert apply_complete(r, owner_token="A", fence=7, response=RESPONSE, now=100.0, retention=100) is None
    assert apply_abandon(r, owner_token="A", fence=7, now=100.0) is None
    assert not apply_release(r, owner_token="A", fence=7, now=100.0)
    assert apply_abandon(r, owner_token="A", fence=7, now=99.0) is not None


def test_expiry_and_lease_remaining() -> None:
    r = rec(lease=30.0, expires=100.0)
    assert not is_expired(r, 99.9)
    assert is_expired(r, 100.0)
    assert r.lease_remaining(10.0) == 20.0
    assert r.lease_remaining(40.0) == 0.0


STATUSES = frozenset({401, 403, 408, 425, 429, 503})


@pytest.mark.parametrize(
    ("status", "started", "exception", "release_requested", "store_5xx", "release_on_exc", "expected"),
    [
        (200, True, False, False, True, False, "store"),
        (201, True, False, False, True, False, "store"),
        (302, True, False, False, True, False, "store"),
        (400, True, False, False, True, False, "store"),
        (402, True, False, False, True, False, "store"),
        (404, True, False, False, True, False, "store"),
        (409, True, False, False, True, False, "store"),
        (422, True, False, False, True, False, "store"),
        (422, False, False, False, True, False, "release"),  # framework validation: endpoint never started
        (404, False, False, False, True, False, "release"),  # routing
        (401, True, False, False, True, False, "release"),
        (403, True, False, False, True, False, "release"),
        (408, True, False, False, True, False, "release"),
        (425, True, False, False, True, False, "release"),
        (429, True, False, False, True, False, "release"),
        (503, True, False, False, True, False, "release"),
        (500, True, False, False, True, False, "store"),
        (502, True, False, False, True, False, "store"),
        (504, True, False, False, True, False, "store"),
        (500, True, False, False, False, False, "release"),
        (None, True, True, False, True, False, "store"),  # unhandled exception: synthetic 500 stored
        (None, True, True, False, True, True, "release"),  # release_on_exception
        (200, True, False, True, True, False, "release"),  # handler asked for release
        (None, True, True, True, True, False, "release"),  # retryable exception type
    ],
)
def test_outcome_table(
    status: int | None,
    started: bool,
    exception: bool,
    release_requested: bool,
    store_5xx: bool,
    release_on_exc: bool,
    expected: str,
) -> None:
    got = classify_outcome(
        status,
        started=started,
        exception=exception,
        release_requested=release_requested,
        release_statuses=STATUSES,
        store_5xx=store_5xx,
        release_on_exception=release_on_exc,
    )
    assert got == expected


header_pairs = st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=8)


@given(header_pairs)
def test_header_encoding_round_trips_in_order(pairs: list[tuple[bytes, bytes]]) -> None:
    assert decode_headers(encode_headers(pairs)) == tuple(pairs)


@given(header_pairs, st.integers(min_value=1, max_value=7))
def test_truncated_header_data_is_a_decode_error(pairs: list[tuple[bytes, bytes]], cut: int) -> None:
    data = encode_headers(pairs)
    if not data:
        return
    with pytest.raises(RecordDecodeError):  # every pair ends with >= 8 bytes, so cutting 1..7 always truncates
        decode_headers(data[: len(data) - cut])
