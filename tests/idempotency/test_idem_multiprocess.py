"""The multi-process proof and the crash tests (issue 5 "Proof"): real OS processes on every durable store.

Each child process runs the payments app behind the middleware on its own store instance (SQLite file, Redis or
PostgreSQL), so the only thing the processes share is the store. The handler's side effect is a line appended to a
file, counted by the test.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import idem_procs
import pytest
from idem_durable import drop_redis_keys, drop_schema, wait_for_lapsed_lease

from stalwart.idempotency import IdempotencyConfig, Outcome, State, StoredResponse, scope_id

pytestmark = pytest.mark.slow

DURABLE = [
    "sqlite",
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("postgres", marks=pytest.mark.integration),
]
PROCESSES = 8
REQUESTS = 50


@pytest.fixture
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    kind = request.param
    name = request.getfixturevalue("unique_prefix").replace("-", "_")
    if kind == "sqlite":
        yield kind, str(tmp_path / "idem.sqlite3"), name
    elif kind == "redis":
        url = request.getfixturevalue("redis_url")
        yield kind, url, name
        drop_redis_keys(url, name)
    else:
        url = request.getfixturevalue("database_url")
        yield kind, url, name
        drop_schema(url, name)


def executions(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("durable", DURABLE, indirect=True)
@pytest.mark.parametrize("seed", [1, 2])
def test_fifty_identical_requests_from_eight_processes_run_the_handler_once(
    durable: tuple[str, str, str], seed: int, tmp_path: Path
) -> None:
    kind, target, name = durable
    effects = tmp_path / "effects.txt"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    shares = [REQUESTS // PROCESSES + (1 if i < REQUESTS % PROCESSES else 0) for i in range(PROCESSES)]
    procs = [
        ctx.Process(
            target=idem_procs.burst,
            args=(kind, target, name, str(effects), share, seed * 1000 + i, barrier, out),
        )
        for i, share in enumerate(shares)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    answers = [answer for result in results for answer in result]
    assert len(answers) == REQUESTS
    assert len(executions(effects)) == 1  # the handler ran exactly once across 8 processes
    assert answers.count((201, False)) == 1  # the one original response
    assert set(answers) <= {(201, False), (201, True), (409, False)}  # replays or 409, never a 5xx


@pytest.mark.parametrize("durable", DURABLE, indirect=True)
@pytest.mark.parametrize("stage", ["claimed", "charged"])
@pytest.mark.parametrize("reclaim", [False, True], ids=["strict", "reclaim"])
async def test_a_worker_killed_mid_request(
    durable: tuple[str, str, str], stage: str, reclaim: bool, tmp_path: Path
) -> None:
    kind, target, name = durable
    effects = tmp_path / "effects.txt"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    victim = ctx.Process(target=idem_procs.crash_victim, args=(kind, target, name, str(effects), reclaim, stage, ready))
    victim.start()
    try:
        pid = await asyncio.get_running_loop().run_in_executor(None, ready.get, True, 90)
        assert pid == victim.pid
        os.kill(pid, signal.SIGKILL)
    finally:
        victim.join(timeout=30)
    assert victim.exitcode == -signal.SIGKILL
    assert len(executions(effects)) == (1 if stage == "charged" else 0)

    store = idem_procs.make_store(kind, target, name)
    config = IdempotencyConfig(lease_ttl=0.5, heartbeat_every=0.4, reclaim_on_lease_expiry=reclaim)
    app = idem_procs.payments_app(store, str(effects), config=config)
    try:
        (record_id,) = [r.record_id for r in await _records(store)]
        dead = await wait_for_lapsed_lease(store, record_id)
        assert dead.state is State.IN_PROGRESS
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://retry") as client:
            retry = await client.post("/payments", json={"amount": 100}, headers={"idempotency-key": "pay-1"})
            again = await client.post("/payments", json={"amount": 100}, headers={"idempotency-key": "pay-1"})
        if reclaim:  # at-least-once: the retry runs the handler (again, if the victim had charged)
            assert retry.status_code == 201
            assert "idempotent-replayed" not in retry.headers
            assert len(executions(effects)) == (2 if stage == "charged" else 1)
            assert again.headers["idempotent-replayed"] == "true"
        else:  # strict: never twice; the outcome is unknown and says so
            assert retry.status_code == 500
            assert retry.json()["type"].endswith("/idempotency-outcome-unknown")
            assert len(executions(effects)) == (1 if stage == "charged" else 0)
            assert again.status_code == 500
        late = StoredResponse(Outcome.RESPONSE, 201, (), b"late")
        assert not await store.heartbeat(
            record_id, owner_token=dead.owner_token, fence=dead.fence, lease_ttl=1.0, retention=60.0
        )
        completed = await store.complete(
            record_id, owner_token=dead.owner_token, fence=dead.fence, response=late, retention=60.0
        )
        # Reclaim: the dead owner's late write is refused by the compare-and-set (a new fence owns the record).
        # Strict: a late completion by the same owner and fence upgrades ABANDONED (spec §2.7 T3).
        assert completed is not reclaim
    finally:
        await store.aclose()


async def _records(store: Any) -> list[Any]:
    """The record of the one key the victim used (found through the public API)."""
    rid = scope_id(idem_procs.SECRET, tenant="default", principal="alice", namespace="default", key="pay-1")
    record = await store.get(rid)
    return [] if record is None else [record]
