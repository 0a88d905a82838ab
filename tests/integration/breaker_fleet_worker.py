"""One process of the fleet in ``test_redis_breaker_processes.py`` (run as a script: ``python this.py URL PREFIX N``).

It builds a ``CircuitBreaker`` on a ``RedisCircuitStore`` and, once told to go (a line on stdin), runs 200 asyncio
callers that keep calling through the breaker until ``<prefix>:done`` exists. The upstream counts every call that
reaches it in ``<prefix>:upstream`` (a Redis counter) and then holds it until ``<prefix>:release`` exists, so that
the probes of a HALF_OPEN period stay out while everyone else keeps trying. Progress goes to Redis
(``<prefix>:rejected:<n>``, ``<prefix>:idle:<n>``); the summary to stdout as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio

import stalwart as sw
from stalwart.redis import RedisCircuitStore

CALLERS = 200
CONFIG = {"failure_threshold": 1, "reset_timeout": 0.0, "half_open_max_calls": 3, "success_threshold": 3}


async def main(url: str, prefix: str, index: int) -> dict[str, int]:
    store = RedisCircuitStore.from_url(url, prefix=prefix, flush_interval=0.02)
    breaker = sw.CircuitBreaker("upstream", store=store, **CONFIG)  # type: ignore[arg-type]
    client = redis.asyncio.Redis.from_url(url)
    while not store.connected:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    stop = asyncio.Event()
    counts = {"probes": 0, "rejected": 0, "in_probe": 0, "running": CALLERS}

    async def upstream() -> str:
        counts["probes"] += 1
        counts["in_probe"] += 1
        await client.incr(f"{prefix}:upstream")
        while not await client.exists(f"{prefix}:release"):
            await asyncio.sleep(0.01)
        counts["in_probe"] -= 1
        return "ok"

    async def caller() -> None:
        try:
            while not stop.is_set():
                try:
                    await breaker.run(upstream)
                except sw.CircuitOpenError:
                    counts["rejected"] += 1
                    await asyncio.sleep(0.002)
        finally:
            counts["running"] -= 1

    async def watcher() -> None:
        while True:
            await client.set(f"{prefix}:rejected:{index}", counts["rejected"])
            if not stop.is_set() and await client.exists(f"{prefix}:done"):
                stop.set()
            if stop.is_set() and counts["running"] == counts["in_probe"]:
                await client.set(f"{prefix}:idle:{index}", 1)  # only probes still out
                return
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(caller()) for _ in range(CALLERS)]
    await watcher()
    await asyncio.gather(*tasks)
    await asyncio.get_running_loop().run_in_executor(None, store.close)
    await client.aclose()
    return {"probes": counts["probes"], "rejected": counts["rejected"]}


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    print(json.dumps(result), flush=True)
