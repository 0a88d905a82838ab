"""Regression: RedisCircuitStore waited out one socket timeout per breaker when Redis did not answer.

What was wrong: a sync round runs the script for each attached breaker in turn. Against a hung or blackholed Redis
(accepting connections, never answering: a stuck server, a dropped route, a failover in progress) each breaker's
call waited its own ``socket_timeout``: a round took N breakers x the timeout (100 breakers and the default 1 s of
``from_url``: 100 s) before the last breaker went local. Meanwhile a breaker further down the list whose open period
had passed rejected every call (``retry_after=None``) waiting for a fleet probe permit that could not come, and
``close()`` blocked as long. A round now stops talking to a single server at its first unanswered call (refused,
reset, timed out): the other breakers go local at once, as the first one did. An error in an answer for one
breaker's keys (a ``ResponseError``) still leaves the others syncing, and so does a cluster client (one node down
says nothing of the others).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import redis

import stalwart as sw
from stalwart.redis import RedisCircuitStore
from stalwart.testing import FakeClock


class HungServer:
    """A TCP server that accepts connections and never answers; counts the connections made to it."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.url = f"redis://127.0.0.1:{self._socket.getsockname()[1]}/0"
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self._socket.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def hung() -> Iterator[HungServer]:
    server = HungServer()
    yield server
    server.close()


def test_a_round_against_a_hung_server_waits_for_one_breaker_only(hung: HungServer) -> None:
    store = RedisCircuitStore.from_url(hung.url, flush_interval=None, socket_timeout=0.2)
    try:
        breakers = [sw.CircuitBreaker(f"b{i}", store=store, clock=FakeClock()) for i in range(10)]
        assert store.sync() is False
        # Each timed-out command drops its connection, so a connection per breaker tried: one, not ten.
        assert len(hung.connections) == 1
        assert not store.connected
        assert all(breaker.call(lambda: "ok") == "ok" for breaker in breakers)  # all local, all calling
        assert store.sync() is False
        assert len(hung.connections) == 2  # one per round
    finally:
        store.close()


def test_an_error_answer_for_one_breaker_leaves_the_others_syncing(redis_url: str, unique_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    store = RedisCircuitStore(client, prefix=unique_prefix, flush_interval=None)
    try:
        for name in ("first", "second", "third"):
            sw.CircuitBreaker(name, store=store, clock=FakeClock())
        client.set(store.keys("first")[0], "not a hash")  # WRONGTYPE for the first breaker's script only
        assert store.sync() is False
        connected = {entry.link.name: entry.link.connected for entry in store._attached}
        assert connected == {"first": False, "second": True, "third": True}
    finally:
        store.close()
        for key in client.scan_iter(match=f"{{{unique_prefix}*"):
            client.delete(key)
        client.close()
