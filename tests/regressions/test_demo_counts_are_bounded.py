"""Regression: ``stalwart demo --requests`` and ``--payments`` had no upper bound.

``--requests 5000000 --duration 5`` was accepted: the process grew by about 100 MB a second (1.2 GB after 12 s,
still growing) towards an out-of-memory kill, for a demo documented to take the ``--duration`` it was given;
``--requests 50000000`` never printed anything. ``--duration`` was bounded (5-600 s), the counts were not.

Both counts are now at most 100,000 per side (the settings refuse more with a ``ValueError`` naming the field; the
command line exits with code 2 and says so, as for any invalid option).
"""

from __future__ import annotations

import pytest

from stalwart.cli import build_parser
from stalwart.cli.demo._outage import MAX_REQUESTS, DemoSettings
from stalwart.cli.demo._payments import MAX_PAYMENTS, PaymentsSettings


def test_the_limits() -> None:
    assert MAX_REQUESTS == MAX_PAYMENTS == 100_000


@pytest.mark.parametrize("option", ["--requests", "--payments"])
def test_the_command_line_refuses_a_count_above_the_limit(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert getattr(build_parser().parse_args(["demo", option, "100000"]), option[2:]) == 100_000
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["demo", option, "100001"])
    assert info.value.code == 2
    assert f"argument {option}: expected a number between 1 and 100000, got 100001" in capsys.readouterr().err


def test_the_settings_refuse_a_count_above_the_limit() -> None:
    assert DemoSettings(requests=100_000).requests == 100_000
    with pytest.raises(ValueError, match="requests must be between 1 and 100000"):
        DemoSettings(requests=100_001)
    assert PaymentsSettings(payments=100_000).payments == 100_000
    with pytest.raises(ValueError, match="payments must be between 1 and 100000"):
        PaymentsSettings(payments=100_001)
