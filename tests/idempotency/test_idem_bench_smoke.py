"""benchmarks/bench_idempotency.py keeps working: its in-process rows, its report, and a tiny run of the script.

No timing is asserted (a few requests mean nothing); what is checked is that every row runs, answers what it
should (201, replays marked) and that the run leaves no server process, temporary directory or store data behind.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import _harness  # noqa: E402
import _idem_report  # noqa: E402
import bench_idempotency  # noqa: E402


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    try:
        yield event_loop
    finally:
        event_loop.close()


def test_in_process_rows_run(loop: asyncio.AbstractEventLoop) -> None:
    cases = _harness.prepare(bench_idempotency.cases(), loop)
    assert [c.unavailable for c in cases] == [None, None, None]
    for case in cases:
        assert _harness.run_once(case, loop, 20) > 0
    names = {c.name for c in cases}
    assert all(c.baseline is None or c.baseline in names for c in cases)


def test_the_replay_row_replays(loop: asyncio.AbstractEventLoop) -> None:
    sent: list[list[tuple[bytes, bytes]]] = []
    app = bench_idempotency._middleware(bench_idempotency._bare_asgi())

    messages: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": bench_idempotency.BODY, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    async def go() -> None:
        for _ in range(3):
            messages.clear()
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/payments",
                "raw_path": b"/payments",
                "query_string": b"",
                "headers": [(b"idempotency-key", b"same")],
                "state": {"principal": "bench"},
            }
            await app(scope, receive, send)
            start = messages[0]
            assert start["status"] == 201
            sent.append(start["headers"])  # type: ignore[arg-type]

    loop.run_until_complete(go())
    assert (b"idempotent-replayed", b"true") not in sent[0]
    assert (b"idempotent-replayed", b"true") in sent[1]
    assert (b"idempotent-replayed", b"true") in sent[2]


def test_percentile_and_table_helpers() -> None:
    assert _idem_report._pct([3.0, 1.0, 2.0], 0.5) == 2.0
    assert _idem_report._pct([1.0, 2.0, 3.0, 4.0], 0.9) == 4.0
    table = [["row", "p50"], ["bare", "1.00 ms"]]
    assert _idem_report._text_table(table).splitlines()[1].startswith("----")
    assert _idem_report._md_table(table).splitlines()[1] == "|---|---|"
    assert bench_idempotency.payment(b"k").endswith(b"\r\n\r\n" + bench_idempotency.BODY)


def _leftovers() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("stalwart-bench-idem-*"))


def _servers() -> int:
    done = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return sum(1 for line in done.stdout.splitlines() if "_idem_fleet.py --serve" in line)


def _tiny(stores: str, tmp_path: Path) -> str:
    before = _leftovers()
    markdown = tmp_path / "results.md"
    script = str(BENCHMARKS / "bench_idempotency.py")
    command = [sys.executable, script, "--tiny", "--stores", stores, "--markdown", str(markdown)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert _leftovers() - before == set()
    text = markdown.read_text()
    assert text.startswith("# Idempotency benchmarks")
    assert "### Targets" in text
    return done.stdout


@pytest.mark.slow
def test_tiny_run_memory_and_sqlite(tmp_path: Path) -> None:
    servers = _servers()
    out = _tiny("memory,sqlite,sqlite-normal", tmp_path)
    for row in ("bare app (the handler)", "memory, fresh key", "memory, replay key", "sqlite, fresh key"):
        assert row in out
    assert "sqlite-normal, replay key" in out
    assert "PASS" in out or "FAIL" in out
    assert "not available" not in out
    assert _servers() == servers


@pytest.mark.slow
@pytest.mark.integration
def test_tiny_run_redis_and_postgres(tmp_path: Path, redis_url: str, database_url: str) -> None:
    # Compare with what was there before: other benchmarks (or an interrupted earlier run) may have left keys under
    # the shared "stalwart-bench-" prefix, which expire on their own; this run must add none.
    with redis.Redis.from_url(redis_url) as client:
        keys_before = set(client.scan_iter(match="{stalwart-bench-*"))
    with psycopg.connect(database_url) as conn:
        schemas_before = set(conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'stalwart_bench_%'"))
    out = _tiny("redis,redis-aof,postgres,redis+l1,postgres+l1", tmp_path)
    for row in ("redis, fresh key", "redis-aof, replay key", "postgres, fresh key", "postgres+l1, replay key"):
        assert row in out
    assert "not available" not in out
    with redis.Redis.from_url(redis_url) as client:
        assert set(client.scan_iter(match="{stalwart-bench-*")) - keys_before == set()
    with psycopg.connect(database_url) as conn:
        found = set(conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'stalwart_bench_%'"))
    assert found - schemas_before == set()
