"""Private redis-server processes for the tests that crash, restart, freeze or replicate a server.

``PrivateRedis(directory, *args)`` runs ``redis-server`` on a unix socket in ``directory`` (no persistence unless
``args`` ask for an AOF; extra ``args`` such as ``--port``/``--replicaof``/``--appendonly`` are passed on);
``await start()`` launches it and polls until it answers (a missing ``redis-server`` skips the test, or fails it
under ``CI=true``), ``restart()`` (without an AOF) loses its data and script cache, ``freeze()``/``thaw()`` send
SIGSTOP/SIGCONT, ``kill()`` is SIGKILL (a crash), ``stop()`` ends it. Nothing waits a fixed time: readiness is
polled.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError


class PrivateRedis:
    """A redis-server of the test's own; see the module docstring."""

    def __init__(self, directory: Path, *args: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        command = [binary, "--unixsocket", str(self.socket), "--dir", str(self.directory), "--save", "", *self.args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.asyncio.Redis.from_url(self.url)
        try:
            for _ in range(1000):  # readiness poll, not a timed assertion
                assert self.proc.poll() is None, "redis-server exited"
                try:
                    if await probe.ping():
                        return
                except (RedisConnectionError, OSError):
                    await asyncio.sleep(0.01)
            raise AssertionError("redis-server did not start")
        finally:
            await probe.aclose()

    async def restart(self) -> None:
        self.stop()
        await self.start()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.frozen = False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.socket.unlink(missing_ok=True)

    def stop(self) -> None:
        self.thaw()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
