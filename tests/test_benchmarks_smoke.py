"""Keep the benchmark suite from rotting: build every row, run each a handful of iterations, render the report.

No timing is asserted: the numbers of a few iterations mean nothing. What is checked is that every row either runs
and returns what it should, or says clearly why it is not available (a stalwart module not written yet); a row that
fails for any other reason (an API drifted, a peer changed) fails this test.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator

import pytest
import stamina.instrumentation

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import _harness  # noqa: E402
import bench_http  # noqa: E402
import run  # noqa: E402
import targets  # noqa: E402


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    try:
        yield event_loop
    finally:
        try:
            # bench_breaker_redis's purgatory rows open asyncio Redis clients in this loop: close them in it (an
            # unclosed client raises ResourceWarning, an error here; closed in another loop, RuntimeError)
            event_loop.run_until_complete(run.aclose_modules())
        finally:
            event_loop.close()


@pytest.fixture(autouse=True)
def _restore_stamina_hooks() -> Iterator[None]:
    # The retry failure rows turn stamina's instrumentation off (as stalwart's is with no hook installed).
    yield
    stamina.instrumentation.set_on_retry_hooks(None)


def test_case_names_are_unique() -> None:
    names = [case.name for case in run.all_cases()]
    assert len(names) == len(set(names))


def test_every_baseline_names_a_row() -> None:
    cases = run.all_cases()
    names = {case.name for case in cases}
    for case in cases:
        assert case.baseline is None or case.baseline in names, case.name


def test_targets_name_existing_rows() -> None:
    names = {case.name for case in run.all_cases()}
    referenced = {row for target in targets.TARGETS for row in target.rows}
    assert referenced, "the targets declare the rows they read"
    assert referenced <= names, referenced - names


def test_every_target_names_an_issue() -> None:
    for target in targets.TARGETS:
        assert "issue" in target.source, target.text
        assert "assumed" not in target.source, target.text


def test_every_group_has_a_title() -> None:
    groups = {case.group for case in run.all_cases()}
    assert groups <= set(run.TITLES), groups - set(run.TITLES)


def test_redis_breaker_module_is_included() -> None:
    modules = {module.__name__ for module in run.MODULES}
    assert {"bench_breaker_redis", "bench_idempotency", "bench_issue6"} <= modules
    names = {case.name for case in run.all_cases()}
    for _, shared, local in targets.brr.TARGET_PAIRS:
        assert {shared, local} <= names


def test_every_row_runs_or_says_why_not(loop: asyncio.AbstractEventLoop) -> None:
    cases = _harness.prepare(run.all_cases(), loop)
    broken = {c.name: c.unavailable for c in cases if c.unavailable and c.unavailable.startswith("error:")}
    assert not broken, broken
    # Every peer row must run: the peers are installed dev dependencies.
    peers = {c.name: c.unavailable for c in cases if not c.stalwart and c.unavailable}
    assert not peers, peers
    for case in cases:
        if case.unavailable is None:
            assert _harness.run_once(case, loop, 5) > 0  # nanoseconds: the row ran


def test_measure_and_report(loop: asyncio.AbstractEventLoop) -> None:
    cases = _harness.prepare(run.all_cases(), loop)
    results = _harness.measure(cases, loop, rounds=2, chunk_seconds=1e-4)
    assert {c.name for c in cases if c.unavailable is None} == set(results)
    repeats = {c.name: max(o.repeat for o in cases if o.group == c.group) for c in cases}
    for name, result in results.items():
        assert len(result.samples) == 2 * repeats[name]  # rounds x the group's repeat: rows of a group pair up
        assert result.median > 0
    assert max(repeats.values()) > 1  # the HTTP table takes more samples
    tables = run.table_rows(cases, results)
    text = run.render_text(tables)
    assert "Retry, success path" in text
    assert "bare call (sync)" in text
    assert run.render_markdown(tables).count("###") == len(tables)
    outcomes = run.evaluate_targets(results, None)
    assert len(outcomes) == len(targets.TARGETS)
    assert {o.status for o in outcomes} <= {"PASS", "FAIL", "SKIP"}
    report = run.render_targets(outcomes)
    assert report.count("\n") >= len(targets.TARGETS)


def test_unavailable_rows_are_reported_not_raised(loop: asyncio.AbstractEventLoop) -> None:
    def missing() -> object:
        raise _harness.Unavailable("stalwart.Nothing not available yet")

    def broken() -> object:
        raise RuntimeError("drifted")

    cases = _harness.prepare(
        [
            _harness.Case("x", "missing", "sync", missing),
            _harness.Case("x", "broken", "sync", broken),
            _harness.Case("x", "wrong value", "sync", lambda: lambda: 2),
        ],
        loop,
    )
    assert cases[0].unavailable == "stalwart.Nothing not available yet"
    assert cases[1].unavailable == "error: RuntimeError: drifted"
    assert cases[2].unavailable is not None
    assert cases[2].unavailable.startswith("error: AssertionError")
    assert _harness.measure(cases, loop, rounds=1, chunk_seconds=1e-4) == {}


@pytest.mark.slow
def test_loopback_throughput_runs() -> None:
    result = bench_http.throughput(requests=20, rounds=1, concurrency=5, warmup=5)
    assert result.error is None, result.error
    plain = result.rows[bench_http.PLAIN_LOOPBACK]
    assert len(plain.rps) == 1
    assert plain.errors == [0]
    assert plain.connections[0] >= 1
    stalwart = result.rows[bench_http.STALWART_LOOPBACK]
    if stalwart.unavailable is None:
        assert stalwart.errors == [0]
    text = run.render_throughput(result)
    assert "requests/s" in text


def test_throughput_target_reports_each_pool_regime() -> None:
    def row(name: str, rps: list[float], connections: list[int]) -> bench_http.ThroughputRow:
        return bench_http.ThroughputRow(name, rps=rps, connections=connections, errors=[0] * len(rps))

    plain = row(bench_http.PLAIN_LOOPBACK, [1000.0, 1100.0, 500.0], [1000, 1000, 50])
    mine = row(bench_http.STALWART_LOOPBACK, [520.0, 480.0, 1050.0], [50, 50, 1000])
    tp = bench_http.ThroughputResult({r.name: r for r in (plain, mine)}, requests=1000, rounds=3, concurrency=50)
    ok, detail = targets.throughput(bench_http.PLAIN_LOOPBACK, bench_http.STALWART_LOOPBACK)({}, tp)
    assert ok is False  # judged on the medians, as the issue words it: 520 vs 1000
    assert "pool kept: stalwart 500 (2 rounds) vs plain 500 (1 rounds), x1.000" in detail
    assert "pool churned: stalwart 1,050 (1 rounds) vs plain 1,050 (2 rounds), x1.000" in detail
