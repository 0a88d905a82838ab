"""The ``cascade`` demo scenario: the summary (pure), the command's output, and one short real run (slow)."""

from __future__ import annotations

import argparse
import json

import pytest
from rich.console import Console

from stalwart.cli import main
from stalwart.cli.demo import _cascade_report
from stalwart.cli.demo._cascade import CascadeResult, CascadeSettings, CascadeSide, run_cascade, summarize_side
from stalwart.cli.demo._cascade_apps import Gauge, ServiceC
from stalwart.cli.demo._summary import Outcome

KEYS = [
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


def side(**overrides: float) -> CascadeSide:
    values = dict.fromkeys(KEYS, 0)
    values.update(overrides)
    return CascadeSide(**values)  # type: ignore[arg-type]


def test_summarize_side() -> None:
    outcomes = [Outcome("ok", 0.01)] * 50 + [Outcome("fallback", 0.2)] * 45 + [Outcome("failed", 5.0)] * 5
    a, b = Gauge(), Gauge()
    for _ in range(3):
        a.enter()
    a.leave()
    a.enter()
    b.enter()
    c = ServiceC(hang_at=1.0, hang_for=2.0)
    c.wasted = 7
    summary = summarize_side(outcomes, a=a, b=b, c=c)
    assert summary == CascadeSide(100, 50, 45, 5, 10.0, 5000.0, 3, 1, 7)
    assert list(summary.as_dict()) == KEYS
    assert summarize_side([], a=Gauge(), b=Gauge(), c=c).p99_ms == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"requests": 0}, {"duration": 4.0}, {"hang_at": 30.0}, {"buffer": 0.0}, {"buffer": 3.0}],
)
def test_settings_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message names its own parameter
        CascadeSettings(**kwargs)  # type: ignore[arg-type]


def test_command_prints_the_pinned_json_and_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    canned = CascadeResult(
        plain=side(requests=400, succeeded=100, failed=300, p50_ms=5013.5, max_in_flight_a=103, wasted_work_c=292),
        resilient=side(requests=400, succeeded=100, fallback=300, p50_ms=8.2, max_in_flight_a=12),
        settings=CascadeSettings(),
    )
    seen: list[CascadeSettings] = []

    def fake_run(settings: CascadeSettings, **_: object) -> CascadeResult:
        seen.append(settings)
        return canned

    monkeypatch.setattr(_cascade_report, "run_cascade", fake_run)
    assert _cascade_report.cascade_command(argparse.Namespace(seed=7, json=True)) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document) == ["plain", "resilient"]
    assert list(document["plain"]) == KEYS
    assert document["plain"]["wasted_work_c"] == 292
    assert seen[0].seed == 7
    console = Console(record=True, width=140)
    console.print(_cascade_report.render_cascade(canned))
    text = console.export_text()
    assert "work C finished for callers already gone" in text
    assert "5,013.5 ms" in text


@pytest.mark.slow
def test_a_short_run_shows_the_pile_up_and_no_wasted_work_with_stalwart() -> None:
    """Six seconds of load, C hanging from the second one: the plain side piles up in A and B and makes C work for
    callers that are gone; the stalwart side does neither. (Only orders of magnitude are asserted, not times.)"""
    result = run_cascade(CascadeSettings(requests=60, duration=6.0, hang_at=2.0, hang_for=6.0))
    plain, resilient = result.plain, result.resilient
    assert plain.requests == resilient.requests == 60
    assert plain.succeeded + plain.fallback + plain.failed == 60
    assert resilient.succeeded + resilient.fallback + resilient.failed == 60
    assert plain.fallback == 0
    assert plain.failed > 0  # every request sent into the hang failed after httpx's 5 s
    assert plain.wasted_work_c > 0
    assert resilient.wasted_work_c == 0
    assert resilient.max_in_flight_a < plain.max_in_flight_a
    assert resilient.max_in_flight_b < plain.max_in_flight_b
    assert resilient.fallback > 0
    assert resilient.p99_ms < plain.p99_ms


def test_stalwart_demo_scenario_cascade_runs_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    canned = CascadeResult(plain=side(requests=1), resilient=side(requests=1), settings=CascadeSettings())
    monkeypatch.setattr(_cascade_report, "run_cascade", lambda settings, **_: canned)
    assert main(["demo", "--scenario", "cascade", "--json", "--seed", "3"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == canned.document()
