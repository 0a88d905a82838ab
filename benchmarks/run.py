"""Run stalwart's benchmark suite: per-call overhead beside the peers, in one run, then the targets.

Usage::

    .venv/bin/python benchmarks/run.py                  # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick          # fewer rounds, shorter chunks (about a minute)
    .venv/bin/python benchmarks/run.py --only retry,breaker-closed --no-throughput
    .venv/bin/python benchmarks/run.py --markdown benchmarks/RESULTS.md

Every table reports the median ns per call over interleaved rounds (see ``_harness.py``), the spread of the middle
half of the rounds, the ratio to the row's baseline (the bare call of the same mode, or the row named in the table)
and, for every row, its cost relative to the first stalwart row of the same table and mode ("÷ stalwart": above 1
means the row is slower than stalwart). Ratios are medians of per-round ratios. The targets are printed last as
PASS / FAIL / SKIP lines.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _common  # noqa: E402
import bench_http  # noqa: E402
from _harness import Case, Result, measure, paired_difference, paired_ratio, prepare  # noqa: E402
from targets import TARGETS, Outcome  # noqa: E402

# The foundation's tables first, in this order (the Redis-backed breaker beside the local one); any other
# ``bench_*.py`` module (rows added by later issues: bench_idempotency, bench_issue6, ...) after them, by name. Each
# module exposes ``cases() -> list[Case]``, and may expose ``async def aclose()``, awaited in the benchmark's event
# loop before it closes (bench_breaker_redis: purgatory's asyncio Redis clients).
_CORE = (
    "bench_retry",
    "bench_breaker",
    "bench_breaker_redis",
    "bench_timeout",
    "bench_bulkhead",
    "bench_pipeline",
    "bench_http",
)


def _discover() -> tuple[Any, ...]:
    found = sorted(name[:-3] for name in os.listdir(HERE) if name.startswith("bench_") and name.endswith(".py"))
    order = [name for name in _CORE if name in found] + [name for name in found if name not in _CORE]
    return tuple(importlib.import_module(name) for name in order)


MODULES = _discover()


async def aclose_modules() -> None:
    """Await every module's ``aclose()`` (resources its rows opened in the benchmark's event loop)."""
    for module in MODULES:
        aclose = getattr(module, "aclose", None)
        if aclose is not None:
            await aclose()


TITLES = {
    "bare": "Baselines",
    "retry": "Retry, success path",
    "retry-failure": "Retry, failure path (3 attempts, zero delay)",
    "retry-budget": "Retry, success path, with and without a RetryBudget",
    "breaker-closed": "Circuit breaker, CLOSED, success path",
    "breaker-open": "Circuit breaker, OPEN rejection (fail-fast)",
    "breaker-redis": "Circuit breaker with state shared through Redis, CLOSED, success path",
    "timeout": "Timeout, call finishing in time",
    "bulkhead": "Bulkhead, slot free",
    "pipeline": "Standard pipeline (timeout + retry + breaker + bulkhead), success path",
    "http": "HTTP, one GET over httpx.MockTransport",
    "adaptive": "AdaptiveTimeout.record(), one sample",
    "keyed-bulkhead": "KeyedBulkhead against Bulkhead, slot free",
    "deadline-middleware": "DeadlineMiddleware, one request over a bare ASGI app",
    "idempotency": "IdempotencyMiddleware + MemoryStore, one POST in-process (no network; not judged here)",
}

PACKAGES = (
    "stalwart",
    "tenacity",
    "stamina",
    "backoff",
    "hyx",
    "pybreaker",
    "aiobreaker",
    "purgatory",
    "circuitbreaker",
    "httpx",
    "httpx-retries",
    "uvicorn",
)


def all_cases() -> list[Case]:
    """Every row of every module, the two bare baselines first."""
    cases = _common.bare_cases()
    for module in MODULES:
        cases.extend(module.cases())
    return cases


def _fmt_ns(ns: float) -> str:
    if ns >= 100_000:
        return f"{ns / 1000:,.0f} µs"
    if ns >= 10_000:
        return f"{ns / 1000:,.1f} µs"
    return f"{ns:,.0f} ns"


def table_rows(cases: list[Case], results: dict[str, Result]) -> list[tuple[str, list[list[str]]]]:
    """The report as (group title, rows of cells) pairs; the first row of each group is the header."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group, []).append(case)
    out = []
    for group, members in groups.items():
        header = ["mode", "row", "per call", "spread", "x baseline", "added", "÷ stalwart"]
        rows = [header]
        for mode in ("sync", "async"):
            in_mode = [c for c in members if c.mode == mode]
            ref = next((c for c in in_mode if c.stalwart and c.name in results), None)
            for case in in_mode:
                if case.name not in results:
                    rows.append([mode, case.name, "not available", "", "", "", case.unavailable or ""])
                    continue
                res = results[case.name]
                base = results.get(case.baseline) if case.baseline else None
                cells = [mode, case.name, _fmt_ns(res.median), f"±{res.spread * 50:.0f}%"]
                if base is not None:
                    cells += [f"{paired_ratio(res, base):.2f}x", _fmt_ns(paired_difference(res, base))]
                else:
                    cells += ["(baseline)", ""]
                cells.append(f"{paired_ratio(res, results[ref.name]):.2f}" if ref is not None else "")
                rows.append(cells)
        out.append((TITLES.get(group, group), rows))
    return out


def render_text(tables: list[tuple[str, list[list[str]]]]) -> str:
    lines = []
    for title, rows in tables:
        widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
        lines.append(f"\n== {title}")
        for r in rows:
            cells = []
            for i, cell in enumerate(r):
                cells.append(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]))
            lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render_markdown(tables: list[tuple[str, list[list[str]]]]) -> str:
    lines = []
    for title, rows in tables:
        lines.append(f"\n### {title}\n")
        lines.append("| " + " | ".join(rows[0]) + " |")
        lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(rows[0]))) + "|")
        for r in rows[1:]:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def render_throughput(tp: bench_http.ThroughputResult | None, markdown: bool = False) -> str:
    if tp is None:
        return ""
    head = (
        f"Loopback throughput: {tp.requests} GETs per round at concurrency {tp.concurrency}, "
        f"{tp.rounds} interleaved rounds, uvicorn (h11) in a subprocess; median of rounds"
    )
    header = ["client", "requests/s", "rounds (req/s)", "TCP connections opened", "errors"]
    rows = [header]
    for row in tp.rows.values():
        if row.unavailable or not row.rps:
            rows.append([row.name, "not available", "", "", row.unavailable or tp.error or ""])
            continue
        rows.append(
            [
                row.name,
                f"{row.median_rps:,.0f}",
                " ".join(f"{v:,.0f}" for v in row.rps),
                f"{row.median_connections:.0f} (per round: {' '.join(map(str, row.connections))})",
                str(sum(row.errors)),
            ]
        )
    if markdown:
        out = [f"\n### {head}\n", "| " + " | ".join(header) + " |", "|---|---:|---|---|---:|"]
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    else:
        out = [f"\n== {head}"]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        out += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    if tp.error:
        out.append(f"(throughput run failed: {tp.error})")
    return "\n".join(out)


def evaluate_targets(results: dict[str, Result], tp: bench_http.ThroughputResult | None) -> list[Outcome]:
    return [target.evaluate(results, tp) for target in TARGETS]


def render_targets(outcomes: list[Outcome], markdown: bool = False) -> str:
    if markdown:
        lines = ["\n### Targets\n", "| result | target | measured | source |", "|---|---|---|---|"]
        lines += [f"| {o.status} | {o.target.text} | {o.detail} | {o.target.source} |" for o in outcomes]
        lines.append(f"\n{_count(outcomes)}")
        return "\n".join(lines)
    lines = ["\n== targets"]
    for o in outcomes:
        lines.append(f"{o.status:4}  {o.target.text}  —  {o.detail}  [{o.target.source}]")
    lines.append(f"\n{_count(outcomes)}")
    return "\n".join(lines)


def _count(outcomes: list[Outcome]) -> str:
    passed = sum(o.status == "PASS" for o in outcomes)
    failed = sum(o.status == "FAIL" for o in outcomes)
    skipped = sum(o.status == "SKIP" for o in outcomes)
    return f"{passed} passed, {failed} failed, {skipped} skipped"


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def source_revision() -> str:
    """The repository's commit, and whether the working tree differs from it (the code measured may not be HEAD)."""
    root = os.path.dirname(HERE)
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (src/ has uncommitted changes)" if dirty else head


def environment_text() -> str:
    v = versions()
    return "\n".join(
        [
            f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"stalwart revision: {source_revision()}",
            f"machine: {machine()}",
            f"python: {platform.python_implementation()} {platform.python_version()}",
            f"load average at start (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            "packages: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter chunks (about a minute)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 25, quick 9)")
    parser.add_argument("--chunk", type=float, help="seconds per timed chunk (default 0.015, quick 0.01)")
    parser.add_argument("--only", help="comma-separated groups to run (e.g. retry,breaker-closed,http)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the loopback throughput benchmark")
    parser.add_argument("--requests", type=int, help="requests per throughput round (default 1000, quick 500)")
    parser.add_argument("--tp-rounds", type=int, help="throughput rounds (default 15, quick 3)")
    parser.add_argument("--markdown", help="also write the report as Markdown to this path")
    args = parser.parse_args(argv)

    rounds = args.rounds or (9 if args.quick else 25)
    chunk = args.chunk or (0.01 if args.quick else 0.015)
    cases = all_cases()
    if args.only:
        wanted = set(args.only.split(",")) | {"bare"}
        cases = [c for c in cases if c.group in wanted]
        by_name = {c.name for c in cases}
        extra = [c for c in all_cases() if c.name not in by_name and any(c.name == d.baseline for d in cases)]
        cases = extra + cases

    # State changes of the breakers opened on purpose by the OPEN rows are logged by stalwart and the peers.
    logging.basicConfig(level=logging.ERROR)
    environment = environment_text()
    print(environment)
    print(f"method: median of {rounds} interleaved rounds, ≥{chunk * 1000:.0f} ms per timed chunk, gc enabled")
    started = time.monotonic()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        prepare(cases, loop)
        progress: Callable[[str], None] = lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)  # noqa: E731
        results = measure(cases, loop, rounds=rounds, chunk_seconds=chunk, progress=progress)
    finally:
        try:
            loop.run_until_complete(aclose_modules())
        finally:
            loop.close()
        asyncio.set_event_loop(None)

    tables = table_rows(cases, results)
    print(render_text(tables))
    timed = time.monotonic()

    tp = None
    if not args.no_throughput and (not args.only or "throughput" in args.only or "http" in args.only):
        print("\n  loopback throughput ...", file=sys.stderr, flush=True)
        tp = bench_http.throughput(
            requests=args.requests or (500 if args.quick else 1000),
            rounds=args.tp_rounds or (3 if args.quick else 15),
        )
        print(render_throughput(tp))
    print(
        f"\n(per-call tables {timed - started:.0f} s, loopback {time.monotonic() - timed:.0f} s)",
        file=sys.stderr,
    )

    outcomes = evaluate_targets(results, tp)
    if args.only:  # only the targets about the rows run (those of groups not run would all be SKIP)
        names = {c.name for c in cases}
        outcomes = [o for o in outcomes if (set(o.target.rows) <= names if o.target.rows else o.status != "SKIP")]
    print(render_targets(outcomes))

    if args.markdown:
        write_markdown(args.markdown, environment, tables, tp, outcomes, rounds, chunk)
    return 0


def write_markdown(
    path: str,
    environment: str,
    tables: list[tuple[str, list[list[str]]]],
    tp: Any,
    outcomes: list[Outcome],
    rounds: int,
    chunk: float,
) -> None:
    parts = [
        "# Benchmark results",
        "",
        "Generated by `.venv/bin/python benchmarks/run.py --markdown benchmarks/RESULTS.md` (`make bench` prints the"
        " same report without writing it); see `benchmarks/README.md` for the method.",
        "",
        "```",
        environment,
        f"method: median of {rounds} interleaved rounds, >= {chunk * 1000:.0f} ms per timed chunk, gc enabled",
        "```",
        render_markdown(tables),
        render_throughput(tp, markdown=True),
        render_targets(outcomes, markdown=True),
        "",
        f"Load average at the end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}. The machine is"
        " shared: absolute times vary with its load; the targets judge ratios and differences between rows timed in"
        " the same rounds of this run.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(parts))


if __name__ == "__main__":
    sys.exit(main())
