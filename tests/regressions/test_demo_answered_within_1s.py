"""Regression: the outage demo's first row made stalwart look like the loser.

What was wrong: ``stalwart demo``'s comparison table opened with "succeeded": plain httpx 1582, httpx + stalwart
about 1350. The plain side's successes include hundreds of requests that waited seconds in its queue during the
outage (its p95 is about 2 s), while the stalwart side answers those at once from the fallback because its bulkhead
lets a request wait at most 0.1 s for a slot, which the report did not say. Nothing in the table counted timely
answers. Now a row "answered within 1 s" (succeeded or fallback, at most 1 s after the request was due) sits next
to "succeeded", each side of ``--json`` has ``answered_within_1s`` after its pinned keys, and the table's footer
states the bulkhead's wait limit (as does the settings line).
"""

from __future__ import annotations

import io

from rich.console import Console

from stalwart.cli.demo._clients import demo_config
from stalwart.cli.demo._outage import _settings_lines
from stalwart.cli.demo._report import render_report
from stalwart.cli.demo._summary import DemoResult, Outcome, summarize

PINNED = [
    "requests",
    "succeeded",
    "fallback",
    "failed",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "retries",
    "upstream_calls_during_outage",
]


def _sides() -> DemoResult:
    # plain: 3 successes, 2 of them seconds late; stalwart: 1 success and 2 quick fallbacks.
    plain = summarize(
        [Outcome("ok", 0.01), Outcome("ok", 2.5), Outcome("ok", 3.0)], retries=0, upstream_calls_during_outage=3
    )
    resilient = summarize(
        [Outcome("ok", 0.01), Outcome("fallback", 0.1), Outcome("fallback", 0.1)],
        retries=0,
        upstream_calls_during_outage=1,
    )
    return DemoResult(plain=plain, resilient=resilient, transitions=(), bulkhead_wait=0.1)


def test_the_json_sides_count_timely_answers_after_the_pinned_keys() -> None:
    document = _sides().document()
    assert list(document["plain"]) == [*PINNED, "answered_within_1s"]
    assert (document["plain"]["answered_within_1s"], document["resilient"]["answered_within_1s"]) == (1, 3)


def test_the_table_shows_timely_answers_next_to_successes_and_the_bulkhead_wait_in_its_footer() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(render_report(_sides()))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.count("│") == 4]
    labels = [row[0] for row in rows]
    at = labels.index("succeeded")
    assert rows[at] == ["succeeded", "3", "1"]
    assert rows[at + 1] == ["answered within 1 s", "1", "3"]
    assert "bulkhead lets a request wait at most 0.1 s for a slot" in " ".join(text.split())


def test_the_settings_line_states_the_wait_limit() -> None:
    assert ("bulkhead", "10 in flight, queue 50, a wait of at most 0.1 s") in _settings_lines(demo_config(50))
