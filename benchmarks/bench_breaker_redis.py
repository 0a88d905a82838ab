"""Circuit breakers with state shared through Redis: the CLOSED success path, beside the local breaker.

Rows (group ``breaker-redis``), sync and async, each wrapping ``return 1``:

* stalwart ``CircuitBreaker`` local (``store=None``), consecutive model and ``CountWindow(100)``: the reference;
* the same with ``store=RedisCircuitStore(client)`` (default ``flush_interval=0.1``, its background thread running
  against the real Redis): a call never waits on Redis, outcomes are batched;
* purgatory with its Redis unit of work (``AsyncRedisUnitOfWork``), async only: Redis round trips on every call.
  Its sync Redis mode cannot be measured: purgatory 3.0.1's ``SyncRedisRepository`` builds an asyncio client, so
  every sync call fails (``TypeError: the JSON object must be str, bytes or bytearray, not coroutine``).

The Redis rows need a reachable Redis at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), else they are "not
available". Keys use a prefix unique to the run and are deleted at exit.

Target (issue 3): the Redis-backed breaker in CLOSED within ``REDIS_VS_LOCAL`` (3x) of the local breaker's per-call
cost, per model and mode (:data:`TARGET_PAIRS`; ratios are medians of per-round ratios).

``run.py`` includes these rows and this target (``targets.py``); to run them alone:
``.venv/bin/python benchmarks/bench_breaker_redis.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import sys
import uuid
from typing import Any
from urllib.parse import urlparse

import _common
import redis
from _common import BARE_ASYNC, BARE_SYNC, afn, fn, stalwart_name
from _harness import Case, Unavailable, measure, paired_ratio, prepare
from purgatory import AsyncCircuitBreakerFactory
from purgatory.service._async.unit_of_work import AsyncRedisUnitOfWork

try:
    from stalwart.redis import RedisCircuitStore
except ImportError:  # the redis extra is not installed: the rows say so
    RedisCircuitStore = None  # type: ignore[assignment,misc]

GROUP = "breaker-redis"
TITLE = "Circuit breaker with state shared through Redis, CLOSED, success path"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_VS_LOCAL = 3.0

LOCAL_SYNC = "stalwart CircuitBreaker, consecutive, local (sync)"
REDIS_SYNC = "stalwart CircuitBreaker, consecutive, RedisCircuitStore (sync)"
LOCAL_COUNT_SYNC = "stalwart CircuitBreaker, CountWindow(100), local (sync)"
REDIS_COUNT_SYNC = "stalwart CircuitBreaker, CountWindow(100), RedisCircuitStore (sync)"
LOCAL_ASYNC = "stalwart CircuitBreaker, consecutive, local (async)"
REDIS_ASYNC = "stalwart CircuitBreaker, consecutive, RedisCircuitStore (async)"
LOCAL_COUNT_ASYNC = "stalwart CircuitBreaker, CountWindow(100), local (async)"
REDIS_COUNT_ASYNC = "stalwart CircuitBreaker, CountWindow(100), RedisCircuitStore (async)"
PURGATORY_ASYNC = "purgatory, Redis unit of work (async)"

TARGET_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("consecutive, sync", REDIS_SYNC, LOCAL_SYNC),
    ("CountWindow(100), sync", REDIS_COUNT_SYNC, LOCAL_COUNT_SYNC),
    ("consecutive, async", REDIS_ASYNC, LOCAL_ASYNC),
    ("CountWindow(100), async", REDIS_COUNT_ASYNC, LOCAL_COUNT_ASYNC),
)
"""``(label, Redis-backed row, local row)``: the Redis-backed row must cost under ``REDIS_VS_LOCAL`` x the local."""

_PREFIX = f"stalwart-bench-{uuid.uuid4().hex[:8]}"
_names = iter(range(1_000_000))
_cleanup: list[Any] = []
_async_clients: list[Any] = []  # purgatory's asyncio Redis clients, closed by aclose()


def _unique(prefix: str) -> str:
    return f"bench-{prefix}-{next(_names)}"


def _require_redis() -> None:
    parsed = urlparse(REDIS_URL)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1.0):
            return
    except OSError as exc:
        raise Unavailable(f"Redis not reachable at {REDIS_URL} ({exc})") from exc


_store: Any = None


def _shared_store() -> Any:
    """One store for every Redis-backed row (as one process would have), created on first use."""
    global _store
    if _store is None:
        _require_redis()
        if RedisCircuitStore is None:
            raise Unavailable("stalwart.redis.RedisCircuitStore not available (install stalwart[redis])")
        _store = RedisCircuitStore.from_url(REDIS_URL, prefix=_PREFIX, ttl=600.0)
        _cleanup.append(_store.close)
    return _store


def _stalwart(target: Any, model: str, shared: bool) -> Any:
    config: dict[str, Any] = {}
    if model == "count":
        config["window"] = stalwart_name("CountWindow")(100)
    if shared:
        config["store"] = _shared_store()
    return stalwart_name("CircuitBreaker")(_unique("cb"), **config)(target)


async def _purgatory_async() -> Any:
    _require_redis()
    uow = AsyncRedisUnitOfWork(REDIS_URL)
    factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30, uow=uow)
    await factory.initialize()
    _async_clients.append(uow.contexts.redis)
    name = f"{_PREFIX}-{_unique('purgatory')}"
    _cleanup.append(lambda: _delete_purgatory_keys(name))
    return factory(name)(afn)


def _delete_purgatory_keys(name: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2.0)
    try:
        client.delete(f"cbr::{name}", f"cbr::{name}::failure_count")
    finally:
        client.close()


def _delete_store_keys() -> None:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2.0)
        try:
            keys = list(client.scan_iter(match=f"{{{_PREFIX}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    except Exception:  # best effort at exit; the keys expire anyway
        pass


async def aclose() -> None:
    """Close the asyncio clients the async rows opened (call it in the benchmark's loop before closing the loop)."""
    while _async_clients:
        await _async_clients.pop().aclose()


@atexit.register
def _at_exit() -> None:
    for action in reversed(_cleanup):
        try:
            action()
        except Exception:  # best effort at exit
            continue
    if _store is not None:
        _delete_store_keys()


def cases() -> list[Case]:
    """Every row of this module."""
    out = []
    for name, make, baseline, stalwart in (
        (LOCAL_SYNC, lambda: _stalwart(fn, "consecutive", False), BARE_SYNC, True),
        (REDIS_SYNC, lambda: _stalwart(fn, "consecutive", True), LOCAL_SYNC, True),
        (LOCAL_COUNT_SYNC, lambda: _stalwart(fn, "count", False), BARE_SYNC, True),
        (REDIS_COUNT_SYNC, lambda: _stalwart(fn, "count", True), LOCAL_COUNT_SYNC, True),
    ):
        out.append(Case(GROUP, name, "sync", make, baseline=baseline, stalwart=stalwart))
    for name, make, baseline, stalwart in (
        (LOCAL_ASYNC, lambda: _stalwart(afn, "consecutive", False), BARE_ASYNC, True),
        (REDIS_ASYNC, lambda: _stalwart(afn, "consecutive", True), LOCAL_ASYNC, True),
        (LOCAL_COUNT_ASYNC, lambda: _stalwart(afn, "count", False), BARE_ASYNC, True),
        (REDIS_COUNT_ASYNC, lambda: _stalwart(afn, "count", True), LOCAL_COUNT_ASYNC, True),
        (PURGATORY_ASYNC, _purgatory_async, BARE_ASYNC, False),
    ):
        out.append(Case(GROUP, name, "async", make, baseline=baseline, stalwart=stalwart))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run this module's rows alone, with the bare baselines, and judge its target."""
    from run import TITLES, render_text, table_rows  # noqa: PLC0415 - run.py may import this module

    TITLES.setdefault(GROUP, TITLE)

    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    rounds, chunk = (9, 0.01) if quick else (30, 0.02)
    logging.basicConfig(level=logging.ERROR)
    all_cases = _common.bare_cases() + cases()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        prepare(all_cases, loop)
        results = measure(all_cases, loop, rounds=rounds, chunk_seconds=chunk)
        loop.run_until_complete(aclose())
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    print(render_text(table_rows(all_cases, results)))
    print("\n== target")
    failed = 0
    for label, shared, local in TARGET_PAIRS:
        if shared not in results or local not in results:
            print(f"SKIP  Redis-backed CircuitBreaker CLOSED ({label}) within {REDIS_VS_LOCAL:g}x the local breaker")
            continue
        ratio = paired_ratio(results[shared], results[local])
        status = "PASS" if ratio <= REDIS_VS_LOCAL else "FAIL"
        failed += status == "FAIL"
        print(
            f"{status}  Redis-backed CircuitBreaker CLOSED ({label}) within {REDIS_VS_LOCAL:g}x the local breaker"
            f"  —  x{ratio:.2f}  [issue 3]"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
