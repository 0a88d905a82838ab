"""Issue 6's per-user bulkhead scenario: one user floods, fifty others should not notice.

An ASGI app whose handler takes 10 ms (``asyncio.sleep``) sits behind a limit of 20 requests in flight; requests are
sent straight into the ASGI callable (no sockets), open loop, for ``--seconds`` (default 4) per run:

* **others**: 50 users, 2 requests per second each (100/s in all);
* **flood**: one more user sending 20x as much as all the others together (2,000/s; the app can serve 2,000/s).

Three runs, the others' p99 latency reported for each:

1. ``baseline``: the others alone, behind ``KeyedBulkheadMiddleware(max_per_key=5, max_concurrent=20)``;
2. ``flood, per-user bulkhead``: the same, with the flood;
3. ``flood, shared bulkhead only``: the flood and the others behind one ``Bulkhead(20)`` with a queue (what a
   service without compartments does).

Target (issue 6): with the flood and the per-user bulkhead, the others' p99 stays within 1.5x of the baseline.
Run: ``.venv/bin/python benchmarks/scenario_keyed_flood.py [--seconds 4]``; exit code 1 when the target fails.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from typing import Any

import stalwart as sw
from stalwart.asgi import KeyedBulkheadMiddleware

WORK = 0.010
SHARED = 20
PER_USER = 5
OTHERS = 50
OTHER_RATE = 2.0  # requests per second per other user
FLOOD_FACTOR = 20  # the flooder sends 20x what all the others send together
TARGET = 1.5


async def handler(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(WORK)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


def shared_only(app: Any) -> Any:
    bulkhead = sw.Bulkhead("flood-shared", max_concurrent=SHARED, max_queue=100_000, queue_timeout=None)

    async def limited(scope: Any, receive: Any, send: Any) -> None:
        async with bulkhead:
            await app(scope, receive, send)

    return limited


def per_user(app: Any) -> Any:
    return KeyedBulkheadMiddleware(
        app,
        resolver=lambda scope: scope["user"],
        max_per_key=PER_USER,
        max_concurrent=SHARED,
        max_queue=100_000,
        queue_timeout=None,
    )


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def one(app: Any, user: str, latencies: list[float] | None, statuses: dict[int, int]) -> None:
    began = time.perf_counter()
    status = 0

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app({"type": "http", "user": user, "headers": []}, _receive, send)
    statuses[status] = statuses.get(status, 0) + 1
    if latencies is not None:
        latencies.append(time.perf_counter() - began)


async def run(app: Any, *, seconds: float, flood: bool) -> tuple[float, dict[int, int], dict[int, int]]:
    """Drive the workload for ``seconds``; the others' p99 (s) and the status counts of others and flood."""
    others: list[float] = []
    other_statuses: dict[int, int] = {}
    flood_statuses: dict[int, int] = {}
    tasks: set[asyncio.Task[None]] = set()
    other_interval = 1.0 / (OTHERS * OTHER_RATE)
    flood_interval = other_interval / FLOOD_FACTOR
    start = time.perf_counter()
    next_other = next_flood = 0.0
    n = 0
    while (now := time.perf_counter() - start) < seconds:
        while next_other <= now:  # open loop: whatever the app does, requests arrive on time
            task = asyncio.create_task(one(app, f"user-{n % OTHERS}", others, other_statuses))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            next_other += other_interval
        while flood and next_flood <= now:
            task = asyncio.create_task(one(app, "flooder", None, flood_statuses))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_flood += flood_interval
        await asyncio.sleep(0.0005)
    await asyncio.gather(*tasks)
    others.sort()
    p99 = others[max(0, math.ceil(0.99 * len(others)) - 1)]
    return p99, other_statuses, flood_statuses


async def main(seconds: float) -> int:
    baseline, statuses, _ = await run(per_user(handler), seconds=seconds, flood=False)
    keyed, k_statuses, k_flood = await run(per_user(handler), seconds=seconds, flood=True)
    shared, s_statuses, s_flood = await run(shared_only(handler), seconds=seconds, flood=True)
    rows = (
        ("baseline (no flood, per-user bulkhead)", baseline, statuses, None),
        ("flood, per-user bulkhead", keyed, k_statuses, k_flood),
        ("flood, shared bulkhead only", shared, s_statuses, s_flood),
    )
    for label, p99, mine, theirs in rows:
        tail = "" if theirs is None else f"; flood {theirs}"
        print(f"others' p99, {label:<40} {p99 * 1000:8.1f} ms  {mine}{tail}")
    ratio = keyed / baseline
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"{verdict}  others' p99 with the flood within {TARGET:g}x of the baseline: x{ratio:.2f}  [issue 6]")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per run (default: %(default)s)")
    sys.exit(asyncio.run(main(parser.parse_args().seconds)))
