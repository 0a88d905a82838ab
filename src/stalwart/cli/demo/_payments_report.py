"""The ``payments`` scenario's Rich report: one table, the two sides side by side, and how to read it."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._payments import PaymentsResult, Tally

__all__ = ["render_payments"]

STORE_LABELS = {"sqlite": "SQLite", "redis": "Redis", "postgres": "PostgreSQL"}

_ROWS: tuple[tuple[str, str], ...] = (
    ("payments requested", "requested"),
    ("requests sent", "sent"),
    ("charges executed", "charges"),
    ("extra charges", "extra_charges"),
    ("duplicates prevented", "duplicates_prevented"),
    ("  replays served", "replays"),
    ("  409 while in progress", "conflicts"),
)


def _cell(tally: Tally, attribute: str, *, bad_if_positive: bool) -> Text:
    value = int(getattr(tally, attribute))
    style = "bold red" if bad_if_positive and value > 0 else ""
    return Text(f"{value:,}", style=style)


def render_payments(result: PaymentsResult) -> RenderableType:
    """The report: the table, then a short explanation of the rows."""
    without, with_ = result.without_middleware, result.with_middleware
    table = Table(title="stalwart demo: lost responses and retries, with and without idempotency keys")
    table.add_column("")
    table.add_column("without the middleware", justify="right")
    table.add_column(f"IdempotencyMiddleware ({STORE_LABELS.get(result.store, result.store)})", justify="right")
    for label, attribute in _ROWS:
        bad = attribute == "extra_charges"
        table.add_row(
            label, _cell(without, attribute, bad_if_positive=bad), _cell(with_, attribute, bad_if_positive=bad)
        )
    if without.errors or with_.errors:
        table.add_row(
            "errors", _cell(without, "errors", bad_if_positive=True), _cell(with_, "errors", bad_if_positive=True)
        )
    notes = Text(
        "Each payment has its own Idempotency-Key and is retried with it until an answer arrives. Some answers are "
        "lost on the way back (the server charged, the client never saw it) and some payments are double-clicked "
        "(sent twice at once). Requests sent counts every retry and copy; extra charges is charges beyond one per "
        "payment: money taken twice. Without the middleware every request charges. With it each payment is charged "
        "once: a retry after the charge gets the first answer replayed (Idempotent-Replayed: true), a duplicate "
        "arriving while the charge runs gets 409 and retries; both count as duplicates prevented.",
        style="dim",
    )
    return Group(table, notes)
