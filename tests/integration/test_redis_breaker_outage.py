"""RedisCircuitStore when Redis goes away: a private ``redis-server`` (no persistence) stopped and restarted.

Expected: no call fails because Redis is down; each store logs the outage once and the return once; meanwhile every
breaker is a local breaker; when Redis is back the breakers resynchronise (a trip made during the outage is proposed
to the fleet, which, having lost its state in the restart, takes it).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis

import stalwart as sw
from stalwart.redis import RedisCircuitStore
from stalwart.testing import FakeClock

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """``redis-server --port <free> --save "" --appendonly no``; :meth:`stop` kills it, :meth:`start` restarts it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            for _ in range(1000):
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    assert self.proc.poll() is None, "redis-server exited"
                    time.sleep(0.01)
        finally:
            client.close()
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    private = PrivateRedis()
    private.start()
    try:
        yield private
    finally:
        if private.proc is not None and private.proc.poll() is None:
            private.stop()


def ok() -> str:
    return "ok"


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def messages(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


def test_calls_go_on_through_an_outage_and_the_breakers_resynchronise(
    server: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    stores = [RedisCircuitStore.from_url(server.url, flush_interval=None, socket_timeout=0.5) for _ in range(2)]
    a, b = (
        sw.CircuitBreaker("ledger", failure_threshold=2, reset_timeout=1e6, store=store, clock=FakeClock())
        for store in stores
    )
    try:
        assert all(store.sync() for store in stores)
        with caplog.at_level(logging.INFO, logger="stalwart"):
            server.stop()
            results = [a.call(ok) for _ in range(100)] + [b.call(ok) for _ in range(100)]
            assert results == ["ok"] * 200  # no call fails because Redis is down
            for _ in range(3):
                assert not any(store.sync() for store in stores)
            assert not stores[0].connected
            for _ in range(2):  # a local trip during the outage: a stops calling, b does not know
                with pytest.raises(Boom):
                    a.call(boom)
            assert a.state is sw.CircuitState.OPEN
            assert b.call(ok) == "ok"
            assert messages(caplog, "cannot reach Redis") == 2  # once per store

            server.start()  # empty: the fleet's state was lost
            assert stores[0].sync()  # a proposes its trip; nothing contradicts it
            assert stores[1].sync()
            assert stores[0].sync()
            assert messages(caplog, "reaches Redis again") == 2
            assert messages(caplog, "cannot reach Redis") == 2
        assert b.state is sw.CircuitState.OPEN  # b heard of a's trip
        assert a.state is sw.CircuitState.OPEN
        with pytest.raises(sw.CircuitOpenError):
            b.call(ok)
    finally:
        for store in stores:
            store.close()


def test_a_breaker_that_saw_nothing_adopts_the_fleets_state(server: PrivateRedis) -> None:
    with (
        RedisCircuitStore.from_url(server.url, flush_interval=None, socket_timeout=0.5) as first,
        RedisCircuitStore.from_url(server.url, flush_interval=None, socket_timeout=0.5) as second,
    ):
        a = sw.CircuitBreaker("search", failure_threshold=1, reset_timeout=1e6, store=first)
        b = sw.CircuitBreaker("search", failure_threshold=1, reset_timeout=1e6, store=second)
        assert first.sync()
        assert second.sync()
        server.stop()
        assert not first.sync()
        server.start()
        assert second.sync()  # reconnects first: nothing to propose, the (new, empty) state is CLOSED
        with pytest.raises(Boom):
            b.call(boom)
        assert second.sync()
        assert first.sync()  # reconnects: adopts the fleet's OPEN
        assert a.state is sw.CircuitState.OPEN


def test_open_breakers_stay_open_across_a_restart_that_lost_the_state(server: PrivateRedis) -> None:
    """Both processes OPEN (the fleet's OPEN), Redis restarted empty meanwhile: the local OPEN is claimed back, and
    the fleet's breaker is OPEN again, with the rest of the open period (regression: both went CLOSED)."""
    clocks = [FakeClock(), FakeClock()]
    with (
        RedisCircuitStore.from_url(server.url, flush_interval=None, socket_timeout=0.5) as first,
        RedisCircuitStore.from_url(server.url, flush_interval=None, socket_timeout=0.5) as second,
    ):
        a, b = (
            sw.CircuitBreaker("ledger", failure_threshold=1, reset_timeout=1e6, store=store, clock=clock)
            for store, clock in zip((first, second), clocks, strict=True)
        )
        assert first.sync()
        assert second.sync()
        with pytest.raises(Boom):
            a.call(boom)
        assert first.sync()
        assert second.sync()
        assert b.state is sw.CircuitState.OPEN
        server.stop()
        assert not first.sync()
        assert not second.sync()
        for clock in clocks:
            clock.advance(60.0)
        server.start()  # empty
        assert second.sync()
        assert first.sync()
        assert second.sync()
        assert (a.state, b.state) == (sw.CircuitState.OPEN, sw.CircuitState.OPEN)
        for breaker in (a, b):
            with pytest.raises(sw.CircuitOpenError) as rejected:
                breaker.call(ok)
            assert rejected.value.retry_after is not None
            assert rejected.value.retry_after > 1e6 - 120.0
        client = redis.Redis(port=server.port)
        try:
            assert client.hget(first.keys("ledger")[0], "st") == b"open"
        finally:
            client.close()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition that the background thread will make true (no timing asserted; 60 s is a hang)."""
    limit = time.monotonic() + 60.0
    while not condition():
        assert time.monotonic() < limit, f"gave up waiting for {what}"
        time.sleep(0.01)


async def test_with_the_background_thread_no_call_waits_or_fails(
    server: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisCircuitStore.from_url(server.url, flush_interval=0.02, socket_timeout=0.5)
    breaker = sw.CircuitBreaker("inventory", window=sw.CountWindow(50), store=store)

    async def fetch() -> str:
        return "ok"

    try:
        with caplog.at_level(logging.INFO, logger="stalwart"):
            wait_until(lambda: store.connected, "the first sync")
            server.stop()
            outcomes = []
            while store.connected:  # calls go on while the thread finds out
                outcomes.append(await breaker.run(fetch))
            for _ in range(500):
                outcomes.append(await breaker.run(fetch))
            assert set(outcomes) == {"ok"}
            server.start()
            wait_until(lambda: store.connected, "the thread to reconnect")
            for _ in range(10):
                outcomes.append(await breaker.run(fetch))
            assert set(outcomes) == {"ok"}
        assert messages(caplog, "cannot reach Redis") == 1
        assert messages(caplog, "reaches Redis again") == 1
    finally:
        store.close()
    assert breaker.state is sw.CircuitState.CLOSED


def test_a_store_that_never_reached_redis_leaves_a_working_local_breaker(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        store = RedisCircuitStore.from_url(url, flush_interval=None, socket_timeout=0.5)
        breaker = sw.CircuitBreaker("cache", failure_threshold=1, reset_timeout=1e6, store=store)
        try:
            assert breaker.call(ok) == "ok"
            assert not store.sync()
            assert not store.sync()
            with pytest.raises(Boom):
                breaker.call(boom)
            with pytest.raises(sw.CircuitOpenError):  # the local rules apply
                breaker.call(ok)
        finally:
            store.close()
    assert messages(caplog, "cannot reach Redis") == 1
