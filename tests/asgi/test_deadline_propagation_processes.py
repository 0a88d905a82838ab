"""Deadline propagation across real processes: the test is service A, B and C are uvicorn servers on loopback.

A gives B 2 s; B (behind DeadlineMiddleware, buffer 0.25 s) passes what it has left to C; C keeps 0.25 s more.
When C hangs, C's own middleware cancels its handler at C's deadline (before B's, before A's), so C stops working
for callers that are about to give up: no wasted work. Nothing is timed: the assertions are on what happened and on
the order of the budgets each service saw.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(role: str, downstream: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CASCADE_ROLE": role}
    if downstream is not None:
        env["CASCADE_DOWNSTREAM"] = downstream
    command = [sys.executable, "-m", "uvicorn", "cascade_apps:app", "--app-dir", HERE, "--port", str(port)]
    command += ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + 30.0
    while True:  # wait for the server to listen (start-up, not a behaviour under test)
        try:
            if httpx.get(url + "/ready", timeout=1.0).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > give_up:
            process.kill()
            pytest.fail(f"service {role} did not start")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    c, c_url = start("c")
    try:
        b, b_url = start("b", downstream=c_url)
        try:
            yield b_url, c_url
        finally:
            b.terminate()
            b.wait(10)
    finally:
        c.terminate()
        c.wait(10)


def test_each_service_has_less_time_than_its_caller(services: tuple[str, str]) -> None:
    b_url, _ = services
    response = httpx.get(b_url + "/work", params={"mode": "fast"}, headers={"Request-Deadline-Ms": "2000"}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    b_budget, c_budget = body["budget"], body["downstream"]["budget"]
    assert 0.0 < c_budget < b_budget < 2.0 - 0.25  # each hop keeps its buffer; the rest travels on
    assert b_budget - c_budget >= 0.25


def test_a_hanging_c_stops_working_when_its_callers_give_up(services: tuple[str, str]) -> None:
    b_url, c_url = services
    before = httpx.get(c_url + "/stats", timeout=5).json()
    response = httpx.get(b_url + "/work", params={"mode": "hang"}, headers={"Request-Deadline-Ms": "2000"}, timeout=10)
    assert response.status_code == 504  # C's deadline passed first: C answered 504 and B passed it on
    after = httpx.get(c_url + "/stats", timeout=5).json()
    assert after["started"] - before["started"] == 1
    assert after["cancelled"] - before["cancelled"] == 1  # C's handler was cancelled: no work left running
    assert after["finished"] == before["finished"]


def test_without_a_deadline_header_nothing_is_propagated(services: tuple[str, str]) -> None:
    b_url, _ = services
    response = httpx.get(b_url + "/work", params={"mode": "fast"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["budget"] is None
    assert response.json()["downstream"]["budget"] is None


def test_a_spent_budget_never_reaches_c(services: tuple[str, str]) -> None:
    b_url, c_url = services
    before = httpx.get(c_url + "/stats", timeout=5).json()
    response = httpx.get(b_url + "/work", params={"mode": "fast"}, headers={"Request-Deadline-Ms": "200"}, timeout=10)
    assert response.status_code == 504  # B's buffer is 0.25 s: nothing left for B, B never runs
    assert httpx.get(c_url + "/stats", timeout=5).json()["started"] == before["started"]
