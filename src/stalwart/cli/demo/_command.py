"""``stalwart demo``: the command-line front of the demo scenarios.

Each scenario is a function ``(args) -> exit code`` registered in :data:`SCENARIOS` under the name
``--scenario`` takes. The default, ``outage``, is :mod:`._outage`; later scenarios (``cascade``, ``payments``)
register here too and may add their own options in :func:`add_arguments`.

A scenario lets ``KeyboardInterrupt`` (Ctrl-C) propagate once it has stopped what it started; :func:`stalwart.cli.main`
turns it into exit code 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator

from rich.console import Console

from ._outage import DemoSettings, run_outage
from ._report import DemoProgress, render_report

__all__ = ["SCENARIOS", "add_arguments", "run"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 5.0 <= value <= 600.0:
        raise argparse.ArgumentTypeError(f"expected between 5 and 600 seconds, got {text}")
    return value


@contextlib.contextmanager
def _quiet_stalwart_logger() -> Iterator[None]:
    """Silence the ``stalwart`` logger while the demo draws.

    The breakers log their state changes (up to ERROR for an opening); the report shows them with timestamps, and
    the log lines would only break up the progress bar.
    """
    logger = logging.getLogger("stalwart")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


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
    if args.json:
        sys.stdout.write(json.dumps(result.document()) + "\n")
        sys.stdout.flush()
    else:
        Console().print(render_report(result))
    return 0


SCENARIOS: dict[str, Callable[[argparse.Namespace], int]] = {"outage": _outage}
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
        "--requests", type=_positive_int, default=defaults.requests, help="requests per side (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=defaults.concurrency,
        help="most requests in flight per side; later ones wait in a queue (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of the upstream's faults and of the retry jitter (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=_duration,
        default=defaults.duration,
        help="seconds over which the requests are spread, 5-600 (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object with the results instead of the tables"
    )


def run(args: argparse.Namespace) -> int:
    """Run the scenario ``args.scenario`` and return the process exit code."""
    return SCENARIOS[args.scenario](args)
