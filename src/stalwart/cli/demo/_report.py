"""The demo's Rich output: a progress bar while it runs, then the side-by-side table.

The progress bar goes to stderr (and only when stderr is a terminal); the report goes to stdout. With ``--json``
the report is replaced by the JSON document, so stdout carries exactly one JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ._summary import ANSWER_WITHIN, BudgetEffect, DemoResult, Kind, SideSummary

__all__ = ["DemoProgress", "render_report"]

SIDES = ("plain", "resilient")
LABELS = {"plain": "plain httpx", "resilient": "httpx + stalwart"}
_STATE_COLOURS = {"open": "red", "half_open": "yellow", "closed": "green"}


class DemoProgress:
    """One progress bar per side, counting finished requests, with the upstream's current phase.

    Args:
        console: where to draw (the demo passes a stderr console); nothing is drawn when it is not a terminal.
        total: requests per side.
    """

    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ok {task.fields[ok]:>5}  fallback {task.fields[fallback]:>5}  failed {task.fields[failed]:>5}"),
            TextColumn("[dim]{task.fields[phase]:<8}"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
            refresh_per_second=5,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._counts: dict[str, dict[Kind, int]] = {}
        for side in SIDES:
            self._tasks[side] = self._progress.add_task(LABELS[side], total=total, ok=0, fallback=0, failed=0, phase="")
            self._counts[side] = {"ok": 0, "fallback": 0, "failed": 0}

    def done(self, side: str, kind: Kind, phase: str) -> None:
        """Count one finished request of ``side`` and show ``phase`` as the upstream's current phase."""
        counts = self._counts[side]
        counts[kind] += 1
        self._progress.update(
            self._tasks[side],
            advance=1,
            phase=phase,
            ok=counts["ok"],
            fallback=counts["fallback"],
            failed=counts["failed"],
        )

    def __enter__(self) -> DemoProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _row(label: str, plain: str, resilient: str, better: str | None) -> tuple[str, Text, Text]:
    styles = {"plain": "", "resilient": ""}
    if better in styles:
        styles[better] = "bold green"
    return label, Text(plain, style=styles["plain"]), Text(resilient, style=styles["resilient"])


def _better(plain: float, resilient: float, *, higher_is_better: bool) -> str | None:
    if plain == resilient:
        return None
    return "resilient" if (resilient > plain) == higher_is_better else "plain"


def _budget_rows(table: Table, plain: SideSummary, budget: BudgetEffect) -> None:
    """The retry budget's effect: the outage load against the load without retries, and the refusals."""
    table.add_row("  of which retries", "0", str(budget.outage_retries))
    load = budget.no_retry_load
    plain_ratio = plain.upstream_calls_during_outage / load if load else 0.0
    mark = "within" if budget.within_limit else "ABOVE"
    table.add_row(
        *_row(
            f"outage load ÷ no-retry load ({load})",
            f"{plain_ratio:.2f}x",
            f"{budget.ratio:.2f}x ({mark} {budget.limit:g}x)",
            _better(plain_ratio, budget.ratio, higher_is_better=False),
        )
    )
    table.add_row(
        "retries refused by the budget",
        "-",
        f"{budget.refused} of {budget.granted + budget.refused} (blip: {budget.blip_refused})",
    )


def _caption(bulkhead_wait: float | None) -> str:
    """The comparison table's footer: what "answered within 1 s" counts, and why the stalwart side succeeds less."""
    caption = (
        f"answered within {ANSWER_WITHIN:g} s: succeeded or served by the fallback at most {ANSWER_WITHIN:g} s after "
        "the request was due (queueing included)."
    )
    if bulkhead_wait is not None:
        caption += (
            f" The stalwart side's bulkhead lets a request wait at most {bulkhead_wait:g} s for a slot, then the "
            "fallback answers: fewer successes, but no request waits seconds for an answer."
        )
    return caption


def _comparison(
    plain: SideSummary,
    resilient: SideSummary,
    slow: Mapping[str, int],
    budget: BudgetEffect | None = None,
    bulkhead_wait: float | None = None,
) -> Table:
    table = Table(
        title="stalwart demo: the same workload, with and without stalwart",
        title_justify="left",
        caption=_caption(bulkhead_wait),
        caption_justify="left",
    )
    table.add_column("")
    table.add_column(LABELS["plain"], justify="right")
    table.add_column(LABELS["resilient"], justify="right")
    table.add_row("requests", str(plain.requests), str(resilient.requests))
    table.add_row("succeeded", str(plain.succeeded), str(resilient.succeeded))
    table.add_row(
        *_row(
            f"answered within {ANSWER_WITHIN:g} s",
            str(plain.answered_within_1s),
            str(resilient.answered_within_1s),
            _better(plain.answered_within_1s, resilient.answered_within_1s, higher_is_better=True),
        )
    )
    table.add_row("served by fallback", str(plain.fallback), str(resilient.fallback))
    table.add_row(
        *_row(
            "failed",
            str(plain.failed),
            str(resilient.failed),
            _better(plain.failed, resilient.failed, higher_is_better=False),
        )
    )
    table.add_row(
        *_row(
            "answered (succeeded + fallback)",
            _rate(plain.answered, plain.requests),
            _rate(resilient.answered, resilient.requests),
            _better(
                plain.answered / max(plain.requests, 1),
                resilient.answered / max(resilient.requests, 1),
                higher_is_better=True,
            ),
        )
    )
    for label, attr in (("latency p50", "p50_ms"), ("latency p95", "p95_ms"), ("latency p99", "p99_ms")):
        p, r = getattr(plain, attr), getattr(resilient, attr)
        table.add_row(*_row(label, f"{p:,.1f} ms", f"{r:,.1f} ms", _better(p, r, higher_is_better=False)))
    if slow:
        p_slow, r_slow = slow.get("plain", 0), slow.get("resilient", 0)
        table.add_row(
            *_row("took longer than 1 s", str(p_slow), str(r_slow), _better(p_slow, r_slow, higher_is_better=False))
        )
    table.add_row("retries sent", str(plain.retries), str(resilient.retries))
    table.add_row(
        *_row(
            "upstream calls during the outage",
            str(plain.upstream_calls_during_outage),
            str(resilient.upstream_calls_during_outage),
            _better(plain.upstream_calls_during_outage, resilient.upstream_calls_during_outage, higher_is_better=False),
        )
    )
    if budget is not None:
        _budget_rows(table, plain, budget)
    return table


def _phases(result: DemoResult) -> Table:
    table = Table(title="the upstream's schedule, and the calls it received", title_justify="left")
    table.add_column("phase")
    table.add_column("from-to (s)", justify="right")
    table.add_column("the upstream does")
    table.add_column("calls: plain", justify="right")
    table.add_column("calls: stalwart", justify="right")
    measured = result.budget is not None
    if measured:
        table.add_column("retries", justify="right")
        table.add_column("refused", justify="right")
    for name, description, start, end in result.phases:
        span = f"{start:.1f}-{end:.1f}"
        plain = result.calls.get("plain", {}).get(name, 0)
        resilient = result.calls.get("resilient", {}).get(name, 0)
        cells = [name, span, description, str(plain), str(resilient)]
        if measured:
            cells += [str(result.retries.get(name, 0)), str(result.refused.get(name, 0))]
        table.add_row(*cells)
    return table


def _phase_at(result: DemoResult, at_s: float) -> str:
    for name, _, start, end in result.phases:
        if start <= at_s < end:
            return name
    return result.phases[-1][0] if result.phases else ""


def _transitions(result: DemoResult) -> RenderableType:
    if not result.transitions:
        return Text("breaker state changes (stalwart side): none", style="dim")
    table = Table(title="breaker state changes (stalwart side)", title_justify="left")
    table.add_column("at (s)", justify="right")
    table.add_column("change")
    table.add_column("during")
    for change in result.transitions:
        colour = _STATE_COLOURS.get(change.to_state, "")
        table.add_row(
            f"{change.at_s:.2f}",
            Text(f"{change.from_state} → {change.to_state}", style=colour),
            _phase_at(result, change.at_s),
        )
    return table


def _settings(result: DemoResult) -> Text:
    return Text.assemble(("stalwart side: ", "bold"), "; ".join(f"{label} {value}" for label, value in result.settings))


def render_report(result: DemoResult) -> RenderableType:
    """The whole report: comparison table, schedule table, breaker state changes and settings."""
    parts: list[RenderableType] = [
        _comparison(result.plain, result.resilient, result.slow, result.budget, result.bulkhead_wait)
    ]
    if result.phases:
        parts.append(_phases(result))
    parts.append(_transitions(result))
    if result.settings:
        parts.append(_settings(result))
    return Group(*parts)
