"""``stalwart demo``: the command-line front of the demo scenarios.

Each scenario is a function ``(args) -> exit code`` registered in :data:`SCENARIOS` under the name
``--scenario`` takes. The default, ``outage``, is :mod:`._outage`; ``payments`` is :mod:`._payments` (its options:
``--payments``, ``--store``); ``cascade`` is :mod:`._cascade` (its own workload; ``--seed``, ``--json``); later
scenarios register here too and may add their own options in
:func:`add_arguments`.

A scenario lets ``KeyboardInterrupt`` (Ctrl-C) propagate once it has stopped what it started; :func:`stalwart.cli.main`
turns it into exit code 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, TypeVar

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table

from ._outage import MAX_REQUESTS, DemoSettings, run_outage
from ._report import DemoProgress, render_report

__all__ = ["SCENARIOS", "add_arguments", "run"]


def _positive_int(text: str, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if maximum is not None and not 1 <= value <= maximum:
        raise argparse.ArgumentTypeError(f"expected a number between 1 and {maximum}, got {value}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _count(text: str) -> int:
    """A count of requests or payments per side: 1 to :data:`MAX_REQUESTS` (memory and run time grow with it)."""
    return _positive_int(text, MAX_REQUESTS)


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 5.0 <= value <= 600.0:
        raise argparse.ArgumentTypeError(f"expected between 5 and 600 seconds, got {text}")
    return value


@contextlib.contextmanager
def _quiet_stalwart_logger(*others: str) -> Iterator[None]:
    """Silence the ``stalwart`` logger (and the loggers named in ``others``) while the demo draws.

    The breakers log their state changes (up to ERROR for an opening); the report shows them with timestamps, and
    the log lines would only break up the progress bar. The payments scenario also silences psycopg's pool, which
    logs every failed connection attempt (the scenario reports an unreachable store in one line).
    """
    loggers = [logging.getLogger(name) for name in ("stalwart", *others)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _Result(Protocol):
    def document(self) -> Mapping[str, object]: ...


R = TypeVar("R", bound=_Result)


def print_result(as_json: bool, result: R, render: Callable[[R], RenderableType]) -> None:
    """Print a scenario's result: its ``document()`` as one line of JSON on stdout, or ``render(result)``.

    No value is ever cut, whatever the terminal's width (or ``COLUMNS``): each table column is at least as wide
    as its longest word, and a table wider than the terminal wraps (Rich fits a table to the console by cutting
    cells to ``…`` and cropping lines, which at 80 columns and below cut the report's values).
    """
    if as_json:
        sys.stdout.write(json.dumps(result.document()) + "\n")
        sys.stdout.flush()
        return
    console = Console()
    renderable = render(result)
    unbounded = console.options.update(max_width=_UNBOUNDED)
    _keep_words_whole(console, unbounded, renderable)
    needed = Measurement.get(console, unbounded, renderable).minimum
    if console.width < needed:
        console = Console(width=needed)
    console.print(renderable, crop=False)  # Rich may still size a table above the width: wrap, never crop


_UNBOUNDED = 100_000
"""A width no report reaches: the one to measure its words at."""


def _keep_words_whole(console: Console, options: ConsoleOptions, renderable: RenderableType) -> None:
    """Give every column of the tables in ``renderable`` (a table, or a group of them) a minimum width: its
    longest word (header included). Rich shrinks the widest columns first without regard to their words, and cuts
    a word longer than its column to ``…``; a column's ``min_width`` is kept whatever the console's width."""
    if isinstance(renderable, Group):
        for part in renderable.renderables:
            _keep_words_whole(console, options, part)
    elif isinstance(renderable, Table):
        for column in renderable.columns:
            cells = [column.header, *column.cells]
            longest = max(Measurement.get(console, options, cell).minimum for cell in cells)
            column.min_width = max(column.min_width or 0, longest)


def _outage(args: argparse.Namespace) -> int:
    settings = DemoSettings(
        requests=args.requests, concurrency=args.concurrency, seed=args.seed, duration=args.duration
    )
    err = Console(stderr=True)

    def started(urls: list[str]) -> None:
        err.print(
            f"stalwart demo: upstreams on {urls[0]} (plain) and {urls[1]} (stalwart); "
            f"{settings.requests} requests per side over {settings.duration:g} s",
            soft_wrap=True,
            highlight=False,
        )

    with _quiet_stalwart_logger(), DemoProgress(err, settings.requests) as progress:
        result = run_outage(settings, on_start=started, on_done=progress.done)  # stops everything on Ctrl-C
    print_result(args.json, result, render_report)
    return 0


def _payments(args: argparse.Namespace) -> int:
    from ._payments import DemoError, PaymentsSettings, run_payments  # noqa: PLC0415 - FastAPI only when needed
    from ._payments_report import render_payments  # noqa: PLC0415

    err = Console(stderr=True)
    store = args.store or os.environ.get("STALWART_STORE") or "sqlite"
    if store not in STORE_CHOICES:
        err.print(
            f"stalwart demo: STALWART_STORE must be one of {', '.join(STORE_CHOICES)}, not {store!r}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        return 2
    settings = PaymentsSettings(payments=args.payments, concurrency=args.concurrency, seed=args.seed, store=store)

    def started(urls: list[str]) -> None:
        err.print(
            f"stalwart demo: payments API on {urls[0]} (without the middleware) and {urls[1]} "
            f"(IdempotencyMiddleware, {store} store); {settings.payments} payments per side",
            soft_wrap=True,
            highlight=False,
        )

    try:
        with _quiet_stalwart_logger("psycopg.pool"):
            result = run_payments(settings, on_start=started)  # stops everything on Ctrl-C
    except DemoError as exc:
        err.print(f"stalwart demo: {exc}", soft_wrap=True, highlight=False, markup=False)
        return 1
    print_result(args.json, result, render_payments)
    return 0


STORE_CHOICES = ("sqlite", "redis", "postgres")
"""The ``payments`` scenario's stores (``--store``, or ``STALWART_STORE``)."""


def _cascade(args: argparse.Namespace) -> int:
    from ._cascade_report import cascade_command  # noqa: PLC0415 - loaded only when this scenario runs

    return cascade_command(args)


SCENARIOS: dict[str, Callable[[argparse.Namespace], int]] = {
    "cascade": _cascade,
    "outage": _outage,
    "payments": _payments,
}
"""Scenario name → function running it and returning the exit code."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``stalwart demo``'s options to ``parser`` (defaults from :class:`DemoSettings`)."""
    defaults = DemoSettings()
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="outage",
        help="what to demonstrate (default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=_count,
        default=defaults.requests,
        help=f"outage scenario: requests per side, 1-{MAX_REQUESTS} (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=defaults.concurrency,
        help="most requests (payments) in flight per side; later ones wait in a queue (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of the upstream's faults and the retry jitter, or of the payments' fates (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=_duration,
        default=defaults.duration,
        help="outage scenario: seconds over which the requests are spread, 5-600 (default: %(default)s)",
    )
    parser.add_argument(
        "--payments",
        type=_count,
        default=200,
        help=f"payments scenario: payments per side, 1-{MAX_REQUESTS} (default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        choices=STORE_CHOICES,
        default=None,
        help="payments scenario: the idempotency store (default: $STALWART_STORE, else sqlite)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object with the results instead of the tables"
    )


def run(args: argparse.Namespace) -> int:
    """Run the scenario ``args.scenario`` and return the process exit code."""
    return SCENARIOS[args.scenario](args)
