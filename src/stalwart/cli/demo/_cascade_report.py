"""The ``cascade`` scenario's command: run it, then print the side-by-side table (or ``--json``).

:func:`cascade_command` is the ``(args) -> exit code`` function the demo's ``SCENARIOS`` registry maps
``--scenario cascade`` to. The scenario has its own workload (``CascadeSettings``: 400 requests over 20 s, C
hanging from 5 s); of the shared options it uses ``--seed`` and ``--json``.
"""

from __future__ import annotations

import argparse

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._cascade import A_TIMEOUT, B_TIMEOUT, CascadeResult, CascadeSettings, CascadeSide, run_cascade

__all__ = ["cascade_command", "render_cascade"]

_LABELS = {"plain": "plain httpx", "resilient": "httpx + stalwart"}


def _cell(plain: float, resilient: float, text: str, side: str, *, lower_is_better: bool = True) -> Text:
    better = "resilient" if (resilient < plain) == lower_is_better else "plain"
    return Text(text, style="bold green" if plain != resilient and side == better else "")


def _table(plain: CascadeSide, resilient: CascadeSide) -> Table:
    table = Table(title="stalwart demo: A → B → C, and C hangs", title_justify="left")
    table.add_column("")
    table.add_column(_LABELS["plain"], justify="right")
    table.add_column(_LABELS["resilient"], justify="right")
    rows: list[tuple[str, str, bool | None]] = [
        ("requests to A", "requests", None),
        ("answered by C (through B and A)", "succeeded", None),
        ("answered by A's fallback", "fallback", None),
        ("failed", "failed", True),
        ("latency p50", "p50_ms", True),
        ("latency p99", "p99_ms", True),
        ("most requests piled up in A", "max_in_flight_a", True),
        ("most requests piled up in B", "max_in_flight_b", True),
        ("work C finished for callers already gone", "wasted_work_c", True),
    ]
    for label, attr, lower in rows:
        p, r = getattr(plain, attr), getattr(resilient, attr)
        texts = (f"{p:,.1f} ms", f"{r:,.1f} ms") if attr.endswith("_ms") else (str(p), str(r))
        if lower is None:
            table.add_row(label, texts[0], texts[1])
        else:
            table.add_row(label, _cell(p, r, texts[0], "plain"), _cell(p, r, texts[1], "resilient"))
    return table


def render_cascade(result: CascadeResult) -> RenderableType:
    """The report: the comparison table and how each side was set up."""
    s = result.settings
    setup = Text.assemble(
        ("workload: ", "bold"),
        f"{s.requests} requests over {s.duration:g} s; C answers in 5 ms, then from {s.hang_at:g} s takes "
        f"{s.hang_for:g} s per request.\n",
        ("plain: ", "bold"),
        "httpx defaults at every hop (5 s timeouts, no retries).\n",
        ("stalwart: ", "bold"),
        f"DeadlineMiddleware on A, B and C (A gives each user {s.user_budget:g} s; each hop keeps "
        f"{s.buffer * 1000:g} ms), the attempt's time left sent as Request-Deadline-Ms; AsyncResilientTransport "
        f"A→B ({A_TIMEOUT:g} s per attempt) and B→C ({B_TIMEOUT:g} s), 2 attempts, a breaker (5 failures, 1 s) "
        "and a bulkhead (20) per origin; A's fallback answers when B cannot.",
    )
    return Group(_table(result.plain, result.resilient), setup)


def cascade_command(args: argparse.Namespace) -> int:
    """``stalwart demo --scenario cascade``: run both sides at once (about 26 s), print the table or the JSON."""
    from ._command import _quiet_stalwart_logger, print_result  # noqa: PLC0415 - the registry imports us lazily

    settings = CascadeSettings(seed=args.seed)
    err = Console(stderr=True)

    def started(urls: dict[str, list[str]]) -> None:
        err.print(
            f"stalwart demo: cascade A → B → C; plain side on {', '.join(urls['plain'])}, stalwart side on "
            f"{', '.join(urls['resilient'])}; C hangs from {settings.hang_at:g} s; about "
            f"{settings.duration + settings.hang_for:g} s",
            soft_wrap=True,
            highlight=False,
        )

    with _quiet_stalwart_logger():
        result = run_cascade(settings, on_start=started)  # stops everything on Ctrl-C
    print_result(args.json, result, render_cascade)
    return 0
