"""`stalwart demo` end to end, as a subprocess: the JSON numbers, and a clean Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest

pytestmark = pytest.mark.slow

SIDE_KEYS = {
    "requests",
    "succeeded",
    "fallback",
    "failed",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "retries",
    "upstream_calls_during_outage",
    "answered_within_1s",
}


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "stalwart", "demo", *args]


def test_json_numbers_are_consistent() -> None:
    done = subprocess.run(
        _demo("--json", "--requests", "300"), capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, done.stderr
    # stdout carries exactly one JSON object and nothing else.
    assert done.stdout.endswith("\n")
    assert done.stdout.count("\n") == 1
    document = json.loads(done.stdout)
    assert set(document) == {"plain", "resilient", "breaker_transitions", "retry_budget"}
    plain, resilient = document["plain"], document["resilient"]
    for side in (plain, resilient):
        assert set(side) == SIDE_KEYS
        assert side["requests"] == 300
        assert side["succeeded"] + side["fallback"] + side["failed"] == side["requests"]
        assert 0 <= side["answered_within_1s"] <= side["succeeded"] + side["fallback"]
        assert 0 <= side["p50_ms"] <= side["p95_ms"] <= side["p99_ms"]
        assert side["upstream_calls_during_outage"] > 0
    # The plain side has neither retries nor a fallback; the resilient side retried and fell back.
    assert plain["retries"] == 0
    assert plain["fallback"] == 0
    assert plain["failed"] > 0
    assert resilient["retries"] > 0
    assert resilient["fallback"] > 0
    # The resilient side answers more requests and spares the upstream during the outage.
    assert resilient["succeeded"] + resilient["fallback"] > plain["succeeded"] + plain["fallback"]
    assert resilient["answered_within_1s"] > plain["answered_within_1s"]
    assert resilient["upstream_calls_during_outage"] < plain["upstream_calls_during_outage"]
    transitions = document["breaker_transitions"]
    assert {"from": "closed", "to": "open"} in [{"from": t["from"], "to": t["to"]} for t in transitions]
    assert all(set(t) == {"at_s", "from", "to"} for t in transitions)
    times = [t["at_s"] for t in transitions]
    assert times == sorted(times)
    assert all(0 <= at <= 30 for at in times)
    # The retry budget (on by default): during the outage the upstream gets at most 1.2x the load of a client
    # that sends each request once, and no retry of the blip was refused.
    budget = document["retry_budget"]
    assert budget["no_retry_load_during_outage"] == 60  # 300 requests over 20 s, the outage is 12-16 s
    assert budget["upstream_calls_during_outage"] == resilient["upstream_calls_during_outage"]
    assert 0 <= budget["retries_during_outage"] <= budget["upstream_calls_during_outage"]
    assert budget["upstream_calls_during_outage"] <= 1.2 * budget["no_retry_load_during_outage"]
    assert budget["within_limit"] is True
    assert budget["blip_retries_refused"] == 0
    assert budget["retries_granted"] >= resilient["retries"]


def ports_of(line: str) -> list[int]:
    """The loopback ports of the URLs the demo printed in ``line``."""
    return [int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", line)]


def refused(port: int) -> bool:
    """Whether a connection to the loopback ``port`` is refused (nothing listens there any more)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True


def wait_answering(port: int, path: str) -> None:
    """Poll ``GET path`` on the loopback ``port`` until it answers 200 (a state to reach, not a timing check)."""
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            continue
    pytest.fail(f"the server on port {port} never answered")


def test_ctrl_c_mid_run_exits_130_and_frees_the_ports() -> None:
    process = subprocess.Popen(_demo(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        ports = ports_of(first)
        assert len(ports) == 2, first
        # Mid-run: both upstreams are answering (the workload runs from 0.2 s to 20 s).
        for port in ports:
            wait_answering(port, "/health")
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
