"""The ``stalwart`` command line.

``stalwart demo`` runs a fault-injection demo comparing plain httpx with httpx over stalwart (see docs/demo.md).
The entry point is :func:`main` (``stalwart = "stalwart.cli.__main__:main"``; ``python -m stalwart`` works too).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "build_parser", "main"]

EXIT_INTERRUPTED = 130
"""The exit code after Ctrl-C (SIGINT): 128 + 2, the shells' convention."""

EXIT_TERMINATED = 143
"""The exit code after SIGTERM (``kill``, ``timeout``, a container stop): 128 + 15."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a ``KeyboardInterrupt`` so that a command stops what it started on the same path as
    after Ctrl-C."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` while the command runs (main thread only; restored afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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

    Exit codes: 0 on success, 2 for invalid arguments, 130 when interrupted by Ctrl-C, 143 when ended by SIGTERM
    (which stops the command the same way Ctrl-C does: servers, threads and temporary files are cleaned up).
    """
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_as_interrupt():
            if args.command == "demo":
                from .demo import run  # noqa: PLC0415

                return run(args)
            raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover - argparse refuses others
    except KeyboardInterrupt as exc:
        # The command has already stopped its servers, threads and clients on the way out.
        terminated = isinstance(exc, _Terminated)
        print(f"stalwart {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr, flush=True)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
