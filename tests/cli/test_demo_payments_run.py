"""`stalwart demo --scenario payments` end to end, as a subprocess: the JSON numbers, the example, a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_or_sigterm_mid_run_frees_the_ports_and_removes_the_store(
    tmp_path: Path, signum: int, code: int, word: str
) -> None:
    # SIGTERM (kill, timeout, a container stop) stops the demo as Ctrl-C does; it used to leave the store behind.
    # The demo's temporary directory goes in a TMPDIR of this test's own, so no other process's directory counts.
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    command = [sys.executable, "-m", "stalwart", "demo", "--scenario", "payments", "--payments", "100000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        ports = ports_of(first)
        assert len(ports) == 2, first
        for port in ports:  # mid-run: both APIs answer (100,000 payments, the most the demo takes, last far longer)
            wait_answering(port, "/stats")
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}") as client:  # payments are being charged
            for _ in range(3000):  # a state to reach (about 30 s at most), not a timing assertion
                if client.get("/stats").json()["charges"] > 0:
                    break
                time.sleep(0.01)
            else:
                pytest.fail("no payment was charged")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # pragma: no cover - only when the test already failed
            process.kill()
            process.communicate()
    assert process.returncode == code, stderr
    assert stdout == ""
    assert word in stderr
    assert "Traceback" not in stderr
    assert all(refused(port) for port in ports)
    assert list(temp.glob("stalwart-demo-*")) == []  # the SQLite store's temporary directory is gone
