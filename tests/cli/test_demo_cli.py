"""`stalwart demo` command-line parsing and entry points (no demo is run here)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import stalwart.cli
import stalwart.cli.__main__
from stalwart.cli import build_parser, main
from stalwart.cli.demo import SCENARIOS
from stalwart.cli.demo._outage import DEFAULT_SEED, DemoSettings


def test_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.command == "demo"
    assert args.scenario == "outage"
    assert args.requests == 2000
    assert args.concurrency == 50
    assert args.seed == DEFAULT_SEED
    assert args.duration == 20.0
    assert args.json is False


def test_all_options() -> None:
    args = build_parser().parse_args(
        ["demo", "--requests", "300", "--concurrency", "8", "--seed", "-4", "--duration", "7.5", "--json"]
    )
    assert (args.requests, args.concurrency, args.seed, args.duration, args.json) == (300, 8, -4, 7.5, True)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["demo", "--requests", "0"],
        ["demo", "--requests", "ten"],
        ["demo", "--concurrency", "-1"],
        ["demo", "--duration", "4"],
        ["demo", "--duration", "601"],
        ["demo", "--duration", "nan"],
        ["demo", "--seed", "1.5"],
        ["demo", "--scenario", "nope"],
    ],
)
def test_invalid_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().out == ""


def test_scenario_registry_has_the_default() -> None:
    assert "outage" in SCENARIOS


def test_the_scenario_is_dispatched(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []
    monkeypatch.setitem(SCENARIOS, "outage", lambda args: seen.append(args) or 7)
    assert main(["demo", "--requests", "5"]) == 7
    assert seen[0].requests == 5


def test_ctrl_c_in_a_scenario_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(SCENARIOS, "outage", interrupted)
    assert main(["demo"]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "stalwart demo: interrupted\n"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"requests": 0}, "requests"),
        ({"concurrency": 0}, "concurrency"),
        ({"duration": 4.0}, "duration"),
        ({"duration": float("inf")}, "duration"),
    ],
)
def test_settings_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DemoSettings(**kwargs)  # type: ignore[arg-type]


def test_console_script_entry_point_is_main() -> None:
    # pyproject's `stalwart` script points at stalwart.cli.__main__:main.
    assert stalwart.cli.__main__.main is stalwart.cli.main


@pytest.mark.parametrize("module", ["stalwart", "stalwart.cli"])
def test_python_dash_m_help(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "demo", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    for option in ("--requests", "--concurrency", "--seed", "--duration", "--json", "--scenario"):
        assert option in done.stdout
    assert done.stderr == ""


def test_store_choices_match_the_payments_app() -> None:
    """The CLI keeps its own copy of the store names (so ``stalwart demo --help`` does not import FastAPI): it must
    name exactly the stores the payments app can build."""
    from stalwart.cli.demo._command import STORE_CHOICES  # noqa: PLC0415
    from stalwart.cli.demo._payments_app import STORE_KINDS  # noqa: PLC0415

    assert STORE_CHOICES == STORE_KINDS
