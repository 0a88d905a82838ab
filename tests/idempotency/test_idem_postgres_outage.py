"""PostgreSQL outages through the middleware: the store talks to the server through a loopback proxy that the tests
cut (every connection closed, new ones refused) and restore (spec §2.14).

Expected, as for Redis (test_idem_outage.py): no double execution ever; 503 when the claim or a replay read cannot
be decided; the real response delivered when only the completion fails (the record then lapses into ABANDONED);
heartbeats failing during an outage do not stop the handler, and its completion lands once the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from idem_apps import SECRET, Probe, client, headers, make_app, wrap
from idem_durable import postgres_schema, wait_for_lapsed_lease, wait_for_log
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from stalwart import StoreUnavailable
from stalwart.idempotency import IdempotencyConfig, scope_id
from stalwart.idempotency.stores.postgres import PostgresStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAYLOAD = {"amount": 1}
RECORD_ID = scope_id(SECRET, tenant="default", principal="alice", namespace="default", key="k-1")


class CuttableProxy:
    """A TCP proxy on loopback in front of PostgreSQL; :meth:`cut` breaks every connection until :meth:`restore`."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.down = False
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.close()
            self._writers.discard(dst)

    def cut(self) -> None:
        self.down = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def proxied(request: pytest.FixtureRequest) -> AsyncIterator[tuple[CuttableProxy, PostgresStore]]:
    url, schema = postgres_schema(request)
    params = conninfo_to_dict(url)
    proxy = CuttableProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await proxy.start()
    store = PostgresStore.from_url(
        make_conninfo(url, host="127.0.0.1", port=str(proxy.port)), schema=schema, connect_timeout=0.5, max_size=4
    )
    try:
        await store.now()  # schema created through the proxy
        yield proxy, store
    finally:
        await store.aclose()
        await proxy.close()


async def back_up(store: PostgresStore) -> None:
    """Wait until the store's pool has reconnected (its reconnection backs off, up to a few seconds)."""
    for _ in range(300):
        with contextlib.suppress(StoreUnavailable):
            await store.now()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the store did not reconnect")


async def test_an_outage_at_claim_is_503_and_never_an_execution(proxied: tuple[CuttableProxy, PostgresStore]) -> None:
    proxy, store = proxied
    probe = Probe()
    mw = wrap(make_app(probe), store)
    async with client(mw) as c:
        assert (await c.post("/payments", json=PAYLOAD, headers=headers())).status_code == 201
        proxy.cut()
        down = await c.post("/payments", json=PAYLOAD, headers=headers(key="k-2"))
        assert down.status_code == 503
        assert down.headers["retry-after"] in {"1", "2"}
        replay_down = await c.post("/payments", json=PAYLOAD, headers=headers())
        assert replay_down.status_code == 503  # a replay read that fails is 503 too, never an execution
        assert probe.calls == 1
        proxy.restore()
        await back_up(store)
        replay = await c.post("/payments", json=PAYLOAD, headers=headers())
        fresh = await c.post("/payments", json=PAYLOAD, headers=headers(key="k-2"))
    assert replay.headers["idempotent-replayed"] == "true"
    assert fresh.status_code == 201
    assert probe.calls == 2
    assert mw.statistics()["store_unavailable_503"] == 2


async def test_an_outage_at_completion_delivers_the_real_response(
    proxied: tuple[CuttableProxy, PostgresStore],
) -> None:
    proxy, store = proxied
    probe = Probe()
    probe.hold()
    config = IdempotencyConfig(lease_ttl=0.5, heartbeat_every=0.4, completion_budget=1.0)
    mw = wrap(make_app(probe), store, config=config)
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        proxy.cut()
        probe.release()
        first = await original
        assert first.status_code == 201  # the truth, not a 5xx
        assert mw.statistics()["completion_write_failures"] == 1
        proxy.restore()
        await back_up(store)
        await wait_for_lapsed_lease(store, RECORD_ID)  # the record survived in progress
        retry = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert retry.status_code == 500  # strict: outcome unknown, never a second execution
    assert retry.json()["type"].endswith("/idempotency-outcome-unknown")
    assert probe.calls == 1


async def test_heartbeats_fail_during_an_outage_and_the_completion_lands_after_it(
    proxied: tuple[CuttableProxy, PostgresStore], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, store = proxied
    probe = Probe()
    probe.hold()
    config = IdempotencyConfig(lease_ttl=30.0, heartbeat_every=0.1)
    mw = wrap(make_app(probe), store, config=config)
    async with client(mw) as c:
        original = asyncio.create_task(c.post("/payments", json=PAYLOAD, headers=headers()))
        await probe.started.wait()
        proxy.cut()
        await wait_for_log(caplog, "heartbeat failed")  # the handler keeps running through the outage
        proxy.restore()
        await back_up(store)
        probe.release()
        first = await original
        replay = await c.post("/payments", json=PAYLOAD, headers=headers())
    assert first.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    assert probe.calls == 1
