"""RedisStore's server-settings check (spec §2.16.3): noeviction and AOF with appendfsync always.

The pure rule is table-tested; the reading of real settings runs against private ``redis-server`` processes on unix
sockets (so the shared server's configuration is never changed), and the logging and strict mode against the
shared server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio
from idem_durable import redis_store

from stalwart import StoreUnavailable
from stalwart.idempotency import FP_VERSION
from stalwart.idempotency.stores._redis_checks import read_settings
from stalwart.idempotency.stores.redis import RedisServerCheckError, RedisStore, server_problems

GOOD = {"maxmemory-policy": "noeviction", "appendonly": "yes", "appendfsync": "always"}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (GOOD, []),
        ({**GOOD, "maxmemory-policy": "allkeys-lru"}, ["maxmemory-policy"]),
        ({**GOOD, "maxmemory-policy": "volatile-ttl"}, ["maxmemory-policy"]),
        ({**GOOD, "appendonly": "no"}, ["AOF is off"]),
        ({**GOOD, "appendonly": "no", "appendfsync": "everysec"}, ["AOF is off"]),  # fsync moot without AOF
        ({**GOOD, "appendfsync": "everysec"}, ["appendfsync"]),
        ({**GOOD, "appendfsync": "no"}, ["appendfsync"]),
        ({"maxmemory-policy": "allkeys-random", "appendonly": "no"}, ["maxmemory-policy", "AOF is off"]),
        ({}, ["could not read maxmemory-policy", "could not read appendonly"]),
        ({"maxmemory-policy": "noeviction", "appendonly": "yes"}, ["could not read appendfsync"]),
        ({**GOOD, "appendfsync": None}, ["could not read appendfsync"]),
    ],
)
def test_server_problems(settings: dict[str, str | None], expected: list[str]) -> None:
    problems = server_problems(settings)
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


# -- private servers --------------------------------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., Awaitable[str]]]:
    """A factory starting ``redis-server`` with given arguments on a unix socket; returns its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    procs: list[subprocess.Popen[bytes]] = []

    async def start(*args: str) -> str:
        sock = tmp_path / f"redis-{len(procs)}.sock"
        proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--dir", str(tmp_path), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        url = f"unix://{sock}"
        client = redis.asyncio.Redis.from_url(url)
        try:
            for _ in range(500):  # readiness poll, not a timed assertion
                assert proc.poll() is None, "redis-server exited"
                try:
                    if await client.ping():
                        return url
                except (redis.exceptions.ConnectionError, OSError):
                    await asyncio.sleep(0.01)
            raise AssertionError("redis-server did not start")
        finally:
            await client.aclose()

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


async def check(url: str, *, strict: bool = False) -> list[str]:
    store = RedisStore.from_url(url, check_server_on_first_use=False, strict_server_checks=strict)
    try:
        return await store.check_server()
    finally:
        await store.aclose()


@pytest.mark.integration
async def test_a_well_configured_server_passes(private_redis: Callable[..., Awaitable[str]]) -> None:
    url = await private_redis("--maxmemory-policy", "noeviction", "--appendonly", "yes", "--appendfsync", "always")
    assert await check(url, strict=True) == []


@pytest.mark.integration
async def test_eviction_and_weak_fsync_are_reported(
    private_redis: Callable[..., Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    url = await private_redis("--maxmemory-policy", "allkeys-lru", "--appendonly", "yes", "--appendfsync", "everysec")
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        problems = await check(url)
    assert len(problems) == 2
    assert "'allkeys-lru'" in problems[0]
    assert "'everysec'" in problems[1]
    assert [r.levelno for r in caplog.records if r.name == "stalwart"] == [logging.WARNING, logging.WARNING]
    with pytest.raises(RedisServerCheckError) as info:
        await check(url, strict=True)
    assert info.value.problems == tuple(problems)


@pytest.mark.integration
async def test_info_is_used_where_config_is_disabled(private_redis: Callable[..., Awaitable[str]]) -> None:
    url = await private_redis(
        "--maxmemory-policy", "volatile-lru", "--appendonly", "yes", "--rename-command", "CONFIG", ""
    )
    problems = await check(url)
    assert len(problems) == 2
    assert "'volatile-lru'" in problems[0]  # read from INFO memory
    assert "could not read appendfsync" in problems[1]  # INFO persistence has aof_enabled, not appendfsync


# -- the shared server (appendonly no, as DESIGN.md §4 starts it) ---------------------------------------------------


async def _claim(store: RedisStore) -> object:
    return await store.claim(
        secrets.token_hex(32),
        fingerprint=b"f",
        fp_version=FP_VERSION,
        owner_token="o",
        lease_ttl=1.0,
        retention=1.0,
    )


@pytest.mark.integration
async def test_first_use_logs_the_problems_once(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    store = redis_store(request)
    try:
        expected = server_problems(await _settings(store))
        with caplog.at_level(logging.WARNING, logger="stalwart"):
            await asyncio.gather(*(_claim(store) for _ in range(5)))
            await _claim(store)
        logged = [r.getMessage() for r in caplog.records if r.name == "stalwart"]
        assert len(logged) == len(expected)
        assert all(p in m for p, m in zip(expected, logged, strict=True))
    finally:
        await store.aclose()


async def _settings(store: RedisStore) -> dict[str, str | None]:
    return await read_settings(store.client)


@pytest.mark.integration
async def test_strict_checks_fail_closed_on_the_shared_server(request: pytest.FixtureRequest) -> None:
    store = redis_store(request, strict_server_checks=True)
    try:
        if not server_problems(await _settings(store)):
            pytest.skip("the shared Redis is configured for the guarantees; nothing to refuse")
        for _ in range(2):  # the failure is remembered: every operation refuses (fail closed, HTTP 503)
            with pytest.raises(RedisServerCheckError) as info:
                await _claim(store)
            assert isinstance(info.value, StoreUnavailable)
        assert await store.client.dbsize() is not None
        keys = [k async for k in store.client.scan_iter(match=f"{{{store.prefix}}}*")]
        assert keys == []  # nothing was written
    finally:
        await store.aclose()
