"""Spec rules that were implemented but not pinned by a test.

- §2.17: every ``IdempotencyConfig`` default (and the middleware's) against the spec's defaults table.
- §2.10: response header filtering end to end — hop-by-hop dropped, regenerated headers not replayed, the default
  deny list with its ``x-ratelimit-*`` prefix, the ``replay_headers_allowed`` opt-in, duplicate lines kept in order.
- §2.5: a record written under another ``fp_version`` answers 422 through the middleware, on every store.
- §2.8 step 5: the L1 cache never holds IN_PROGRESS or ABANDONED records and drops entries at the end of retention.
- §2.9 / §2.16.4: transactional mode stores a body over ``max_stored_body`` as omitted; a HEAD is replayed with its
  own content-length (commit 287d4f7).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from idem_durable import postgres_schema
from idem_harness import Harness

from stalwart.idempotency import (
    FP_VERSION,
    FingerprintSpec,
    IdempotencyConfig,
    IdempotencyMiddleware,
    Identity,
    MemoryStore,
    Outcome,
    Record,
    State,
    StoredResponse,
    compute_fingerprint,
)
from stalwart.idempotency._answers import ReplayCache
from stalwart.idempotency._keys import scope_id
from stalwart.idempotency._options import DEFAULT_DENIED_REPLAY_HEADERS
from stalwart.idempotency.stores.postgres import PostgresStore
from stalwart.testing import FakeClock

SECRET = b"s" * 32
MiB = 1024 * 1024


async def call(
    mw: Any, *, method: str = "POST", key: bytes = b"k-1", body: bytes = b"{}"
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": "/payments",
        "raw_path": b"/payments",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"idempotency-key", key)],
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await mw(scope, receive, send)
    (start,) = [m for m in messages if m["type"] == "http.response.start"]
    return (
        start["status"],
        list(start["headers"]),
        b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body"),
    )


def responding(status: int = 201, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"created") -> Any:
    calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        await receive()
        await send({"type": "http.response.start", "status": status, "headers": list(headers or [])})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    app.calls = calls  # type: ignore[attr-defined]
    return app


def middleware(app: Any, store: Any = None, **config: Any) -> IdempotencyMiddleware:
    return IdempotencyMiddleware(
        app,
        store=MemoryStore() if store is None else store,
        resolver=lambda s: Identity("alice"),
        secret=SECRET,
        config=IdempotencyConfig(**config),
    )


# -- §2.17 defaults ----------------------------------------------------------------------------------------------------


def test_config_defaults_match_the_spec_table() -> None:
    c = IdempotencyConfig()
    assert c.methods == frozenset({"POST", "PATCH"})
    assert c.required is False
    assert c.lenient_header is True
    assert c.max_key_length == 255
    assert c.retention == 24 * 3600.0
    assert c.lease_ttl == 30.0
    assert c.heartbeat_every == 10.0
    assert c.wait_timeout == 0.0
    assert c.retry_after_cap == 5.0
    assert c.release_statuses == frozenset({401, 403, 408, 425, 429, 503})
    assert c.store_5xx is True
    assert c.release_on_exception is False
    assert c.reclaim_on_lease_expiry is False
    assert c.abandoned_status == 500
    assert c.max_request_body == 10 * MiB
    assert c.max_stored_body == 1 * MiB
    assert c.max_capture_duration == 5 * 60.0
    assert c.store_timeout == 2.0
    assert c.fail_open is False
    assert c.shield_disconnect is True
    assert c.replay_header == "Idempotent-Replayed"
    assert c.replay_headers_allowed == frozenset()
    # §2.8 step 9: completion_retry_budget "3 tries / 2 s".
    assert (c.completion_attempts, c.completion_budget) == (3, 2.0)
    # §2.17: l1_cache off by default; deny_replay_headers set-cookie, x-ratelimit-*, retry-after (+ hop-by-hop).
    assert inspect.signature(IdempotencyMiddleware).parameters["l1_cache"].default == 0
    assert frozenset({"set-cookie", "x-ratelimit-*", "retry-after"}) == DEFAULT_DENIED_REPLAY_HEADERS
    # §2.15: MemoryStore max_entries 10 000.
    assert MemoryStore().max_entries == 10_000


def test_heartbeat_defaults_to_a_third_of_the_lease() -> None:
    assert IdempotencyConfig(lease_ttl=60.0).heartbeat_every == 20.0


# -- §2.10 header filtering --------------------------------------------------------------------------------------------

HEADERS = [
    (b"Link", b"</a>; rel=a"),
    (b"Connection", b"close"),
    (b"Keep-Alive", b"timeout=5"),
    (b"TE", b"trailers"),
    (b"Trailer", b"x-checksum"),
    (b"Upgrade", b"h2c"),
    (b"Proxy-Authenticate", b"Basic"),
    (b"proxy-connection", b"keep-alive"),
    (b"Transfer-Encoding", b"chunked"),
    (b"Date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
    (b"Server", b"uvicorn"),
    (b"X-Request-Id", b"req-1"),
    (b"traceparent", b"00-abc-def-01"),
    (b"X-RateLimit-Remaining", b"9"),
    (b"x-ratelimit-reset", b"60"),
    (b"X-RateLimiter", b"kept: not the x-ratelimit- prefix"),
    (b"Retry-After", b"3"),
    (b"Set-Cookie", b"a=1"),
    (b"set-cookie", b"b=2"),
    (b"link", b"</b>; rel=b"),
    (b"Location", b"/payments/1"),
    (b"ETag", b'"e1"'),
    (b"Content-Type", b"application/json"),
    (b"X-Dup", b"1"),
    (b"x-dup", b"2"),
]
ALWAYS_REPLAYED = [
    (b"Link", b"</a>; rel=a"),
    (b"X-RateLimiter", b"kept: not the x-ratelimit- prefix"),
    (b"link", b"</b>; rel=b"),
    (b"Location", b"/payments/1"),
    (b"ETag", b'"e1"'),
    (b"Content-Type", b"application/json"),
    (b"X-Dup", b"1"),
    (b"x-dup", b"2"),
]


async def test_replayed_headers_are_filtered_in_order_with_duplicates() -> None:
    app = responding(headers=HEADERS)
    mw = middleware(app)
    first = await call(mw)
    assert first[1] == HEADERS  # the first client gets everything
    status, headers, body = await call(mw)
    assert (status, body, len(app.calls)) == (201, b"created", 1)
    assert headers == [*ALWAYS_REPLAYED, (b"content-length", b"7"), (b"idempotent-replayed", b"true")]


async def test_replay_headers_allowed_opts_in_to_the_denied_ones() -> None:
    app = responding(headers=HEADERS)
    mw = middleware(app, replay_headers_allowed=frozenset({"set-cookie", "x-ratelimit-*", "Retry-After"}))
    await call(mw)
    _, headers, _ = await call(mw)
    names = [n for n, _ in headers]
    assert names == [
        b"Link",
        b"X-RateLimit-Remaining",
        b"x-ratelimit-reset",
        b"X-RateLimiter",
        b"Retry-After",
        b"Set-Cookie",
        b"set-cookie",
        b"link",
        b"Location",
        b"ETag",
        b"Content-Type",
        b"X-Dup",
        b"x-dup",
        b"content-length",
        b"idempotent-replayed",
    ]
    # Hop-by-hop and regenerated headers cannot be opted in.
    mw = middleware(responding(headers=HEADERS), replay_headers_allowed=frozenset({"connection", "date", "server"}))
    await call(mw)
    _, headers, _ = await call(mw)
    assert {n.lower() for n, _ in headers}.isdisjoint({b"connection", b"date", b"server", b"set-cookie"})


async def test_the_x_ratelimit_prefix_needs_its_dash() -> None:
    mw = middleware(responding(headers=[(b"x-ratelimit-limit", b"10"), (b"x-ratelimit", b"bare")]))
    await call(mw)
    _, headers, _ = await call(mw)
    assert (b"x-ratelimit", b"bare") in headers
    assert all(n != b"x-ratelimit-limit" for n, _ in headers)


# -- §2.5 fp_version mismatch through the middleware, every store ------------------------------------------------------


async def test_a_record_of_another_fp_version_answers_422(harness: Harness) -> None:
    app = responding()
    mw = middleware(app, store=harness.store)
    record_id = scope_id(SECRET, tenant="default", principal="alice", namespace="default", key="k-1")
    fingerprint = compute_fingerprint(
        FingerprintSpec(),
        method="POST",
        raw_path=b"/payments",
        query=b"",
        headers=[(b"content-type", b"application/json")],
        body=b"{}",
    )
    claimed = await harness.store.claim(
        record_id,
        fingerprint=fingerprint,
        fp_version=FP_VERSION + 1,  # the same request, fingerprinted by another definition
        owner_token="a" * 32,
        lease_ttl=3600.0,
        retention=3600.0,
        reclaim=False,
    )
    assert claimed.claimed
    stored = StoredResponse(Outcome.RESPONSE, 201, (), b"old")
    assert await harness.store.complete(
        record_id, owner_token="a" * 32, fence=claimed.record.fence, response=stored, retention=3600.0
    )
    status, _, body = await call(mw)
    assert status == 422
    assert b"idempotency-key-reused" in body
    assert app.calls == []
    assert mw.statistics()["mismatches_422"] == 1
    # The same request without the planted record is replayed (the scope and fingerprint above are the middleware's).
    other = await call(mw, key=b"k-2")
    assert other[0] == 201
    assert (await call(mw, key=b"k-2"))[1][-1] == (b"idempotent-replayed", b"true")


# -- §2.8 step 5 L1 cache ----------------------------------------------------------------------------------------------


def record(state: State, *, expires_at: float = 1_000.0) -> Record:
    return Record(
        record_id="r" * 64,
        state=state,
        fingerprint=b"\x01" * 32,
        fp_version=FP_VERSION,
        owner_token="o" * 32,
        fence=1,
        attempt=1,
        lease_expires_at=30.0,
        created_at=0.0,
        updated_at=0.0,
        expires_at=expires_at,
        outcome=Outcome.RESPONSE if state is State.COMPLETED else None,
        status=201 if state is State.COMPLETED else None,
    )


def test_the_l1_cache_never_holds_in_progress_or_abandoned_records() -> None:
    cache = ReplayCache(8, FakeClock())
    for state in (State.IN_PROGRESS, State.ABANDONED):
        cache.put(record(state), store_now=0.0)
        assert cache.get("r" * 64) is None
    completed = record(State.COMPLETED)
    cache.put(completed, store_now=0.0)
    assert cache.get("r" * 64) is completed


def test_the_l1_cache_drops_an_entry_at_the_end_of_its_retention() -> None:
    clock = FakeClock(start=500.0)  # the local clock is unrelated to the store's: only the remaining time counts
    cache = ReplayCache(8, clock)
    cache.put(record(State.COMPLETED, expires_at=1_000.0), store_now=900.0)  # 100 s of retention left
    clock.advance(99.9)
    assert cache.get("r" * 64) is not None
    clock.advance(0.1)
    assert cache.get("r" * 64) is None
    assert cache._entries == {}  # dropped, not merely hidden


async def test_the_l1_cache_is_not_fed_by_abandoned_replays() -> None:
    store = MemoryStore()
    mw = IdempotencyMiddleware(
        responding(), store=store, resolver=lambda s: Identity("alice"), secret=SECRET, l1_cache=8
    )
    record_id = scope_id(SECRET, tenant="default", principal="alice", namespace="default", key="k-1")
    fingerprint = compute_fingerprint(
        FingerprintSpec(),
        method="POST",
        raw_path=b"/payments",
        query=b"",
        headers=[(b"content-type", b"application/json")],
        body=b"{}",
    )
    claimed = await store.claim(
        record_id,
        fingerprint=fingerprint,
        fp_version=FP_VERSION,
        owner_token="a" * 32,
        lease_ttl=3600.0,
        retention=3600.0,
        reclaim=False,
    )
    assert await store.abandon(record_id, owner_token="a" * 32, fence=claimed.record.fence)
    assert (await call(mw))[0] == 500
    # The late completion is what the next retry sees: nothing stale was cached.
    late = StoredResponse(Outcome.RESPONSE, 201, (), b"late")
    assert await store.complete(
        record_id, owner_token="a" * 32, fence=claimed.record.fence, response=late, retention=3600.0
    )
    assert (await call(mw))[::2] == (201, b"late")


# -- transactional mode (PostgreSQL) -----------------------------------------------------------------------------------


@pytest.fixture
async def pg_store(request: pytest.FixtureRequest) -> Any:
    url, schema = postgres_schema(request)
    store = PostgresStore.from_url(url, schema=schema)
    yield store
    await store.aclose()


@pytest.mark.integration
async def test_transactional_mode_stores_a_body_over_max_stored_body_as_omitted(pg_store: PostgresStore) -> None:
    big = b"x" * 2048
    app = responding(body=big)
    mw = middleware(app, store=pg_store, transactional=True, max_stored_body=1024)
    first = await call(mw)
    assert (first[0], first[2]) == (201, big)  # the first client gets the whole body
    status, headers, body = await call(mw)
    assert (status, body, len(app.calls)) == (201, b"", 1)
    assert (b"idempotency-body-omitted", b"true") in headers
    assert (b"idempotent-replayed", b"true") in headers


@pytest.mark.integration
async def test_transactional_mode_replays_a_head_with_its_own_content_length(pg_store: PostgresStore) -> None:
    app = responding(status=200, headers=[(b"content-type", b"text/plain"), (b"content-length", b"1234")])
    mw = middleware(app, store=pg_store, transactional=True, methods=frozenset({"HEAD", "POST"}))
    first = await call(mw, method="HEAD")
    assert first[0] == 200
    status, headers, body = await call(mw, method="HEAD")
    assert (status, body, len(app.calls)) == (200, b"", 1)
    lengths = [v for n, v in headers if n.lower() == b"content-length"]
    assert lengths == [b"1234"]
    assert headers[:2] == [(b"content-type", b"text/plain"), (b"content-length", b"1234")]  # in its place
