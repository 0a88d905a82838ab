"""The demo's Rich report and progress bar, rendered to a string."""

from __future__ import annotations

import io

from rich.console import Console

from stalwart.cli.demo._report import DemoProgress, render_report
from stalwart.cli.demo._summary import BudgetEffect, DemoResult, SideSummary, Transition

PLAIN = SideSummary(2000, 1582, 0, 418, 12.2, 2540.4, 3075.8, 0, 200, 1255)
RESILIENT = SideSummary(2000, 1348, 652, 0, 8.1, 112.0, 365.1, 237, 20, 2000)


def _render(result: DemoResult) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(render_report(result))
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def _rows(text: str, first: str) -> list[list[str]]:
    """The cells of every table row whose first cell is ``first``."""
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] == first:
            rows.append(cells)
    return rows


def test_comparison_table_rows() -> None:
    result = DemoResult(
        plain=PLAIN,
        resilient=RESILIENT,
        transitions=(),
        slow={"plain": 412, "resilient": 0},
    )
    text = _render(result)
    assert "plain httpx" in text
    assert "httpx + stalwart" in text
    expected = {
        "succeeded": ("1582", "1348"),
        "answered within 1 s": ("1255", "2000"),
        "served by fallback": ("0", "652"),
        "failed": ("418", "0"),
        "answered (succeeded + fallback)": ("79.1%", "100.0%"),
        "latency p50": ("12.2 ms", "8.1 ms"),
        "latency p95": ("2,540.4 ms", "112.0 ms"),
        "latency p99": ("3,075.8 ms", "365.1 ms"),
        "took longer than 1 s": ("412", "0"),
        "retries sent": ("0", "237"),
        "upstream calls during the outage": ("200", "20"),
    }
    for label, (plain, resilient) in expected.items():
        assert _rows(text, label) == [[label, plain, resilient]]
    labels = [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") == 4]
    assert labels.index("answered within 1 s") == labels.index("succeeded") + 1
    assert "answered within 1 s: succeeded or served by the fallback" in text
    assert "bulkhead" not in text  # no wait limit given: none stated
    assert "breaker state changes (stalwart side): none" in text


def test_the_footer_states_the_bulkhead_wait_limit() -> None:
    text = _render(DemoResult(plain=PLAIN, resilient=RESILIENT, transitions=(), bulkhead_wait=0.1))
    assert "bulkhead lets a request wait at most 0.1 s for a slot" in " ".join(text.split())


def test_schedule_transitions_and_settings() -> None:
    result = DemoResult(
        plain=PLAIN,
        resilient=RESILIENT,
        transitions=(Transition(12.26, "closed", "open"), Transition(17.09, "half_open", "closed")),
        phases=(
            ("degraded", "30% fail", 8.0, 12.0),
            ("outage", "every call: 503", 12.0, 16.0),
            ("recovery", "ok", 16.0, 20.0),
        ),
        calls={"plain": {"outage": 200, "recovery": 600}, "resilient": {"outage": 20}},
        settings=(("reset_timeout", "1 s"), ("attempts", "3")),
    )
    text = _render(result)
    assert _rows(text, "outage") == [["outage", "12.0-16.0", "every call: 503", "200", "20"]]
    assert _rows(text, "recovery") == [["recovery", "16.0-20.0", "ok", "600", "0"]]
    assert _rows(text, "12.26") == [["12.26", "closed → open", "outage"]]
    assert _rows(text, "17.09") == [["17.09", "half_open → closed", "recovery"]]
    assert "stalwart side: reset_timeout 1 s; attempts 3" in text


def test_retry_budget_rows_and_columns() -> None:
    budget = BudgetEffect(
        no_retry_load=400, outage_calls=25, outage_retries=3, blip_retries=4, blip_refused=0, granted=250, refused=2
    )
    result = DemoResult(
        plain=PLAIN,
        resilient=RESILIENT,
        transitions=(),
        phases=(("blip", "503", 4.0, 5.0), ("outage", "every call: 503", 12.0, 16.0)),
        calls={"plain": {"blip": 100, "outage": 200}, "resilient": {"blip": 10, "outage": 25}},
        retries={"blip": 4, "outage": 3},
        refused={"degraded": 2},
        budget=budget,
    )
    text = _render(result)
    assert _rows(text, "of which retries") == [["of which retries", "0", "3"]]
    assert _rows(text, "outage load ÷ no-retry load (400)") == [
        ["outage load ÷ no-retry load (400)", "0.50x", "0.06x (within 1.2x)"]
    ]
    assert _rows(text, "retries refused by the budget") == [
        ["retries refused by the budget", "-", "2 of 252 (blip: 0)"]
    ]
    assert _rows(text, "blip") == [["blip", "4.0-5.0", "503", "100", "10", "4", "0"]]
    assert _rows(text, "outage") == [["outage", "12.0-16.0", "every call: 503", "200", "25", "3", "0"]]


def test_an_outage_load_above_the_limit_says_so() -> None:
    budget = BudgetEffect(
        no_retry_load=10, outage_calls=13, outage_retries=3, blip_retries=0, blip_refused=0, granted=3, refused=0
    )
    result = DemoResult(plain=PLAIN, resilient=RESILIENT, transitions=(), budget=budget)
    assert _rows(_render(result), "outage load ÷ no-retry load (10)")[0][2] == "1.30x (ABOVE 1.2x)"


def test_progress_draws_nothing_when_not_a_terminal_and_counts() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False)
    with DemoProgress(console, total=3) as progress:
        progress.done("plain", "ok", "healthy")
        progress.done("plain", "failed", "blip")
        progress.done("resilient", "fallback", "blip")
    assert stream.getvalue() == ""
    assert progress._counts == {  # the counts shown beside each bar
        "plain": {"ok": 1, "fallback": 0, "failed": 1},
        "resilient": {"ok": 0, "fallback": 1, "failed": 0},
    }


def test_progress_on_a_terminal_shows_both_sides() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=150, color_system=None)
    with DemoProgress(console, total=2) as progress:
        progress.done("plain", "ok", "healthy")
        progress.done("resilient", "fallback", "outage")
    text = stream.getvalue()
    assert "plain httpx" in text
    assert "httpx + stalwart" in text
    assert "1/2" in text
    assert "outage" in text
