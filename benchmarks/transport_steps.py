"""Where ``AsyncResilientTransport``'s cost per request goes: the default transport with one feature off at a time.

Usage: ``.venv/bin/python benchmarks/transport_steps.py [--quick] [--rounds N]`` (seconds; not part of ``run.py``).

Every row is one ``GET`` answered ``200`` by the same ``httpx.MockTransport`` handler as ``bench_http``'s per-request
table (no network), through ``httpx.AsyncClient``: plain httpx; stalwart's transport with the default
``ResilienceConfig``; the same with one feature turned off through ``ResilienceConfig`` (per-attempt timeout, attempt
header, retries, retry budget, breaker, bulkhead); and with all of them off (what remains is the transport's own
frame: the origin lookup, the request classification, the drivers' loop). A feature's cost is the default row minus
the row without it (median of per-round differences, rows interleaved as in ``run.py``); the costs need not add up
exactly (features share work, e.g. a clock read).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import httpx  # noqa: E402
from _common import stalwart_name  # noqa: E402
from _harness import Case, Result, measure, paired_difference, paired_ratio, prepare  # noqa: E402
from bench_http import _async_getter, _mock, resilience_config  # noqa: E402

GROUP = "http-steps"
PLAIN = "plain httpx + MockTransport"
DEFAULT = "AsyncResilientTransport, default ResilienceConfig"
ALL_OFF = "AsyncResilientTransport, all of the features below off"

FEATURES: dict[str, dict[str, Any]] = {
    "per-attempt timeout (timeout=None)": {"timeout": None},
    "attempt header (attempt_header=None)": {"attempt_header": None},
    "retries (max_attempts=1)": {"max_attempts": 1},
    "retry budget (budget=None)": {"budget": None},
    "breaker (use_breaker=False)": {"use_breaker": False},
    "bulkhead (use_bulkhead=False)": {"use_bulkhead": False},
}


def _stalwart(**changes: Any) -> Any:
    config = dataclasses.replace(resilience_config(), **changes)
    transport = stalwart_name("AsyncResilientTransport")(_mock(), config=config)
    return _async_getter(httpx.AsyncClient(transport=transport))


def cases() -> list[Case]:
    """The rows: plain httpx, the default transport, one per feature off, all off."""
    everything: dict[str, Any] = {}
    for changes in FEATURES.values():
        everything.update(changes)
    rows: list[tuple[str, Any]] = [
        (PLAIN, lambda: _async_getter(httpx.AsyncClient(transport=_mock()))),
        (DEFAULT, _stalwart),
        (ALL_OFF, lambda: _stalwart(**everything)),
    ]
    for label, changes in FEATURES.items():
        rows.append((f"without {label}", lambda changes=changes: _stalwart(**changes)))
    return [
        Case(GROUP, name, "async", make, baseline=None if name == PLAIN else PLAIN, expect=200, stalwart=name != PLAIN)
        for name, make in rows
    ]


def report(results: dict[str, Result]) -> str:
    """The breakdown as text: each feature's cost, the frame's, the total over plain httpx."""
    plain, default = results[PLAIN], results[DEFAULT]
    lines = [
        f"plain httpx: {plain.median / 1000:.1f} µs per request; "
        f"default transport: {default.median / 1000:.1f} µs, "
        f"+{paired_difference(default, plain) / 1000:.2f} µs (x{paired_ratio(default, plain):.3f})",
        "",
        "cost of each feature (default minus the row without it):",
    ]
    total = 0.0
    for label in FEATURES:
        row = results.get(f"without {label}")
        if row is None:
            lines.append(f"  {label:45} not available")
            continue
        cost = paired_difference(default, row)
        total += cost
        lines.append(f"  {label:45} {cost / 1000:+.2f} µs")
    if ALL_OFF in results:
        frame = paired_difference(results[ALL_OFF], plain)
        lines.append(f"  {'transport frame (everything off) over plain':45} {frame / 1000:+.2f} µs")
        lines.append(
            f"  {'sum of the above':45} {(total + frame) / 1000:+.2f} µs "
            f"(measured total +{paired_difference(default, plain) / 1000:.2f} µs)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="9 rounds of 10 ms chunks instead of 25 of 20 ms")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (the features cost ~1 µs of ~65: use 100)")
    args = parser.parse_args(argv)
    rounds, chunk = (9, 0.01) if args.quick else (25, 0.02)
    rounds = args.rounds or rounds
    logging.basicConfig(level=logging.ERROR)
    loop = asyncio.new_event_loop()
    try:
        all_cases = prepare(cases(), loop)
        for case in all_cases:
            if case.unavailable:
                print(f"{case.name}: not available ({case.unavailable})")
        results = measure(all_cases, loop, rounds=rounds, chunk_seconds=chunk)
    finally:
        loop.close()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
