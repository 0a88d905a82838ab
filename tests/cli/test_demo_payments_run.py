"""`stalwart demo --scenario payments` end to end, as a subprocess: the JSON numbers, the example, a clean Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from test_demo_payments import check_document
from test_demo_run import ports_of, refused, wait_answering

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _json_run(command: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n")
    assert done.stdout.count("\n") == 1  # exactly one JSON object on stdout
    document = json.loads(done.stdout)
    assert isinstance(document, dict)
    return document


def test_json_numbers_are_consistent() -> None:
    command = [sys.executable, "-m", "stalwart", "demo", "--scenario", "payments", "--json", "--payments", "40"]
    check_document(_json_run(command), 40, "sqlite")


def test_the_example_is_the_same_scenario() -> None:
    command = [sys.executable, str(EXAMPLES / "payments_demo.py"), "--json", "--payments", "15"]
    check_document(_json_run(command), 15, "sqlite")


def test_the_table_is_printed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stalwart", "demo", "--scenario", "payments", "--payments", "10"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for label in ("payments requested", "charges executed", "duplicates prevented", "replays served"):
        assert label in done.stdout
    assert "without the middleware" in done.stdout
    assert done.stderr.startswith("stalwart demo: payments API on http://127.0.0.1:")


def _demo_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("stalwart-demo-*"))


def test_ctrl_c_mid_run_exits_130_frees_the_ports_and_removes_the_store() -> None:
    before = _demo_dirs()
    command = [sys.executable, "-m", "stalwart", "demo", "--scenario", "payments", "--payments", "1000000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        ports = ports_of(first)
        assert len(ports) == 2, first
        for port in ports:  # mid-run: both APIs answer (a million payments take far longer than this test)
            wait_answering(port, "/stats")
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}") as client:  # payments are being charged
            for _ in range(200):
                if client.get("/stats").json()["charges"] > 0:
                    break
            else:
                pytest.fail("no payment was charged")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # pragma: no cover - only when the test already failed
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert all(refused(port) for port in ports)
    assert _demo_dirs() - before == set()  # the SQLite store's temporary directory is gone
