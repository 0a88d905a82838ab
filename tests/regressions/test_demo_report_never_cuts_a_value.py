"""Regression: ``stalwart demo`` on a narrow terminal (or with ``COLUMNS`` small, a split pane, a CI log) printed
its report with the values cut to ``…``.

Rich shrinks a table to the console's width and, once a column is narrower than its longest word, ellipsises the
cells: at 72 columns six cells of the outage report were cut; at 60 the phases' spans (``0.0-…``) and the phase
names; at 40 the latencies (``1,…``) and the budget's verdict; at 20 the schedule table's cells were empty. The
numbers are the point of the report, and nothing said they were missing.

The report is now printed at least as wide as its widest word in every column needs (a terminal narrower than that
wraps the lines; no value is lost), for every scenario (they all print through ``print_result``).
"""

from __future__ import annotations

import pytest

from stalwart.cli.demo._cascade import CascadeResult, CascadeSettings, CascadeSide
from stalwart.cli.demo._cascade_report import render_cascade
from stalwart.cli.demo._command import print_result
from stalwart.cli.demo._payments import PaymentsResult, Tally
from stalwart.cli.demo._payments_report import render_payments
from stalwart.cli.demo._report import render_report
from stalwart.cli.demo._summary import BudgetEffect, DemoResult, SideSummary, Transition

OUTAGE = DemoResult(
    plain=SideSummary(2000, 1582, 0, 418, 12.2, 2540.4, 3075.8, 0, 200, 1255),
    resilient=SideSummary(2000, 1348, 652, 0, 8.1, 112.0, 365.1, 237, 20, 2000),
    transitions=(Transition(12.26, "closed", "open"), Transition(17.09, "half_open", "closed")),
    phases=(
        ("degraded", "30% fail (500/503); 15% of the rest slow (0.3-0.9 s)", 8.0, 12.0),
        ("outage", "every call: 503 after 1 s", 12.0, 16.0),
        ("recovery", "200 after 2-8 ms", 16.0, 20.0),
    ),
    calls={"plain": {"outage": 200, "recovery": 600}, "resilient": {"outage": 20}},
    retries={"outage": 3},
    refused={"degraded": 2},
    budget=BudgetEffect(
        no_retry_load=400, outage_calls=25, outage_retries=3, blip_retries=4, blip_refused=0, granted=250, refused=2
    ),
    settings=(("reset_timeout", "1 s"), ("attempts", "3")),
    bulkhead_wait=0.1,
)
CASCADE_KEYS = [
    "requests",
    "succeeded",
    "fallback",
    "failed",
    "p50_ms",
    "p99_ms",
    "max_in_flight_a",
    "max_in_flight_b",
    "wasted_work_c",
]
CASCADE = CascadeResult(
    plain=CascadeSide(**dict(zip(CASCADE_KEYS, (400, 100, 0, 300, 5013.5, 5100.2, 103, 101, 279), strict=True))),
    resilient=CascadeSide(**dict(zip(CASCADE_KEYS, (400, 100, 300, 0, 8.2, 440.1, 12, 11, 0), strict=True))),
    settings=CascadeSettings(),
)
PAYMENTS = PaymentsResult(
    Tally(requested=200, sent=308, charges=308),
    Tally(requested=200, sent=326, replays=110, conflicts=16, charges=200, errors=3),
    "postgres",
    200,
)

CASES = [
    pytest.param(
        OUTAGE, render_report, ["2,540.4", "3,075.8", "12.0-16.0", "recovery", "0.06x", "2 of 252"], id="outage"
    ),
    pytest.param(CASCADE, render_cascade, ["5,013.5", "5,100.2", "440.1", "279"], id="cascade"),
    pytest.param(PAYMENTS, render_payments, ["IdempotencyMiddleware", "PostgreSQL", "308", "326"], id="payments"),
]


@pytest.mark.parametrize(("result", "render", "values"), CASES)
@pytest.mark.parametrize("columns", [20, 40, 60, 72, 80])
def test_no_value_is_cut_at_any_width(
    result: object,
    render: object,
    values: list[str],
    columns: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("NO_COLOR", raising=False)
    print_result(False, result, render)  # type: ignore[arg-type]
    text = capsys.readouterr().out
    assert "…" not in text
    for value in values:  # a value may wrap before its unit, never be cut
        assert value in text


@pytest.mark.parametrize(("result", "render", "values"), CASES)
def test_a_wide_terminal_is_used_as_it_is(
    result: object,
    render: object,
    values: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    print_result(False, result, render)  # type: ignore[arg-type]
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 200
