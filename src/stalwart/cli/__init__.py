"""The ``stalwart`` command line.

``stalwart demo`` runs a fault-injection demo comparing plain httpx with httpx over stalwart (see docs/demo.md).
The entry point is :func:`main` (``stalwart = "stalwart.cli.__main__:main"``; ``python -m stalwart`` works too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["EXIT_INTERRUPTED", "build_parser", "main"]

EXIT_INTERRUPTED = 130
"""The exit code after Ctrl-C (SIGINT): 128 + 2, the shells' convention."""


def build_parser() -> argparse.ArgumentParser:
    """The ``stalwart`` argument parser, with its subcommands."""
    from .demo import add_arguments  # noqa: PLC0415 - keeps `import stalwart.cli` light

    parser = argparse.ArgumentParser(prog="stalwart", description="stalwart: resilience for Python services.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="watch a misbehaving upstream hit plain httpx and httpx with stalwart, side by side",
        description=(
            "Send the same open-loop workload through plain httpx and through httpx with stalwart, against an "
            "upstream that goes through a blip, a degraded phase and an outage, and compare the results."
        ),
    )
    add_arguments(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``stalwart`` command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 on success, 2 for invalid arguments, 130 when interrupted by Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run  # noqa: PLC0415

            return run(args)
        raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover - argparse refuses others
    except KeyboardInterrupt:
        # The command has already stopped its servers, threads and clients on the way out.
        print(f"stalwart {args.command}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
