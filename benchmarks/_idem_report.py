"""The report of ``bench_idempotency.py``: statistics, tables (text and Markdown) and the targets."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _idem_fleet import Fleet
    from bench_idempotency import Row, ThroughputRow

__all__ = ["TARGET_ADDED_MS", "Report", "render"]

TARGET_ADDED_MS = {"redis": 1.0, "redis-aof": 1.0, "sqlite": 2.0, "sqlite-normal": 2.0, "postgres": 3.0}
"""Issue 5's added-latency targets at p50, concurrency 1 (fresh keys), in ms."""


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def _added(row: Row, bare: Row) -> float:
    return statistics.median(
        statistics.median(a) - statistics.median(b) for a, b in zip(row.rounds, bare.rounds, strict=True)
    )


def _replay_ratio(row: Row, bare: Row) -> float:
    return statistics.median(
        statistics.median(a) / statistics.median(b) for a, b in zip(row.rounds, bare.rounds, strict=True)
    )


@dataclass
class Report:
    latency: list[Row]
    throughput: list[ThroughputRow]
    fleet: Fleet
    settings: dict[str, Any]

    def latency_table(self) -> list[list[str]]:
        bare = self.latency[0]
        table = [["row", "p50", "p90", "added p50", "vs handler"]]
        for row in self.latency:
            cells = [row.label, f"{_pct(row.samples, 0.5):.2f} ms", f"{_pct(row.samples, 0.9):.2f} ms"]
            if row is bare:
                cells += ["(baseline)", ""]
            else:
                cells += [f"{_added(row, bare):+.2f} ms", f"{_replay_ratio(row, bare):.2f}x"]
            table.append(cells)
        return table

    def throughput_table(self) -> list[list[str]]:
        bare = self.throughput[0]
        table = [["server", "requests/s", "x bare"]]
        for row in self.throughput:
            ratio = statistics.median(a / b for a, b in zip(row.rps, bare.rps, strict=True))
            name = "bare app" if row.kind == "bare" else row.kind
            table.append([name, f"{statistics.median(row.rps):,.0f}", "(baseline)" if row is bare else f"{ratio:.2f}"])
        return table

    def targets(self) -> list[tuple[str, str, str]]:
        """(status, target, detail) lines."""
        out = []
        bare = self.latency[0]
        by = {(row.kind, row.mode): row for row in self.latency}
        for kind in self.fleet.stores:
            if kind not in TARGET_ADDED_MS:
                continue
            limit = TARGET_ADDED_MS[kind]
            row = by.get((kind, "fresh"))
            name = f"{kind}: added p50 (fresh key, concurrency 1) < {limit:g} ms"
            if row is None:
                out.append(("SKIP", name, self.fleet.unavailable.get(kind, "not run")))
                continue
            added = _added(row, bare)
            out.append(("PASS" if added < limit else "FAIL", name, f"{added:.2f} ms"))
        for kind in self.fleet.stores:
            row = by.get((kind, "replay"))
            name = f"{kind}: replay p50 <= handler p50"
            if row is None:
                out.append(("SKIP", name, self.fleet.unavailable.get(kind, "not run")))
                continue
            ratio = _replay_ratio(row, bare)
            out.append(("PASS" if ratio <= 1.0 else "FAIL", name, f"{ratio:.2f}x the bare app"))
        return out

    def environment(self) -> list[str]:
        lines = [
            f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
            "settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()),
        ]
        probes = self.fleet.fsync_ms
        if probes:
            lines.append(
                f"disk ({tempfile.gettempdir()}): 4 KiB append + fdatasync, {len(probes)} probes spread over the "
                f"latency rounds: p50 {_pct(probes, 0.5):.2f} ms, p90 {_pct(probes, 0.9):.2f} ms, "
                f"max {max(probes):.2f} ms"
            )
        lines += [f"{kind}: {note}" for kind, note in self.fleet.notes.items()]
        lines += [f"{kind}: not available ({why})" for kind, why in self.fleet.unavailable.items()]
        return lines


def _text_table(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "|".join("---" for _ in table[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


def render(report: Report, *, markdown: bool = False) -> str:
    s = report.settings
    table = _md_table if markdown else _text_table
    heading = "### " if markdown else ""
    parts = [
        ("- " if markdown else "") + ("\n- " if markdown else "\n").join(report.environment()),
        f"{heading}Concurrency 1: latency of one POST /payments, {s['rounds']} rounds x {s['per_round']} "
        "requests per row",
        table(report.latency_table()),
        f"{heading}Concurrency {s['concurrency']}: fresh keys, {s['tp_rounds']} rounds x {s['tp_requests']} "
        "requests per server",
        table(report.throughput_table()),
        f"{heading}Targets",
        "\n".join(
            ("- " if markdown else "") + f"{status}  {name}: {detail}" for status, name, detail in report.targets()
        ),
    ]
    return "\n\n".join(parts) + "\n"
