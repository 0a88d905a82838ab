"""The standard pipeline on the success path, against the same protections assembled from the peers.

stalwart: ``Pipeline.standard(total_timeout=Timeout(10.0), retry=Retry(on=Exception), breaker=CircuitBreaker(name),
bulkhead=Bulkhead(name, max_concurrent=10))``, the standard order of DESIGN.md (total timeout → retry → breaker →
bulkhead), as one decorator.
hyx 0.0.2 (async only): ``timeout(10.0)`` → ``retry(on=Exception, attempts=3)`` → ``consecutive_breaker()`` →
``bulkhead(10, 110)``, stacked decorators in the same order.
tenacity + circuitbreaker + asyncio: ``asyncio.timeout(10.0)`` around a tenacity ``retry(stop_after_attempt(3))`` of a
``@circuit`` function, inside an ``asyncio.Semaphore(10)`` (the sync twin drops the timeout, which sync code cannot
enforce, and uses ``threading.BoundedSemaphore``).

The combinations the foundation issue states its target against have no bulkhead: "hyx's retry + breaker +
timeout" and "tenacity + circuitbreaker + asyncio.timeout". Those two rows are measured as stated and the target is
judged against them (stalwart's pipeline still pays for its bulkhead, so this is the stricter comparison); the rows
with a bulkhead are the like-for-like comparison, shown beside them.
"""

from __future__ import annotations

import asyncio
import threading
from itertools import count
from typing import Any

import tenacity
from _common import BARE_ASYNC, BARE_SYNC, afn, fn, stalwart_name
from _harness import Case
from circuitbreaker import circuit
from hyx.bulkhead import bulkhead as hyx_bulkhead
from hyx.circuitbreaker import consecutive_breaker
from hyx.retry import retry as hyx_retry
from hyx.timeout import timeout as hyx_timeout

GROUP = "pipeline"

STALWART_ASYNC = "stalwart standard Pipeline (async)"
HYX_ASYNC = "hyx timeout+retry+breaker+bulkhead (async)"
PEERS_ASYNC = "tenacity+circuitbreaker+asyncio.timeout+Semaphore (async)"
HYX_ISSUE_ASYNC = "hyx timeout+retry+breaker, as in the issue (async)"
PEERS_ISSUE_ASYNC = "tenacity+circuitbreaker+asyncio.timeout, as in the issue (async)"
STALWART_SYNC = "stalwart standard Pipeline (sync)"
PEERS_SYNC = "tenacity+circuitbreaker+BoundedSemaphore (sync)"

_ids = count()


def _stalwart(target: Any) -> Any:
    pipeline = stalwart_name("Pipeline")
    timeout = stalwart_name("Timeout")
    retry = stalwart_name("Retry")
    breaker = stalwart_name("CircuitBreaker")
    bulkhead = stalwart_name("Bulkhead")
    n = next(_ids)
    parts = {
        "total_timeout": timeout(10.0),
        "retry": retry(on=Exception),
        "breaker": breaker(f"bench-pipeline-{n}"),
        "bulkhead": bulkhead(f"bench-pipeline-{n}", max_concurrent=10),
    }
    standard = getattr(pipeline, "standard", None)
    policy = standard(**parts) if standard is not None else pipeline(*parts.values())
    return policy(target)


async def _hyx() -> Any:
    # hyx's timeout reads the running loop at decoration time, so this factory runs inside the loop.

    return hyx_timeout(10.0)(hyx_retry(on=Exception, attempts=3)(consecutive_breaker()(hyx_bulkhead(10, 110)(afn))))


async def _hyx_issue() -> Any:
    # the combination the foundation issue names: hyx's retry + breaker + timeout, no bulkhead
    return hyx_timeout(10.0)(hyx_retry(on=Exception, attempts=3)(consecutive_breaker()(afn)))


def _peers_issue_async() -> Any:
    # the combination the foundation issue names: tenacity + circuitbreaker + asyncio.timeout, no semaphore
    inner = tenacity.retry(stop=tenacity.stop_after_attempt(3))(circuit(failure_threshold=5, recovery_timeout=30)(afn))
    timeout = asyncio.timeout

    async def case() -> int:
        async with timeout(10.0):
            return await inner()

    return case


def _peers_async() -> Any:

    inner = tenacity.retry(stop=tenacity.stop_after_attempt(3))(circuit(failure_threshold=5, recovery_timeout=30)(afn))
    semaphore = asyncio.Semaphore(10)
    timeout = asyncio.timeout

    async def case() -> int:
        # the semaphore sits outside the retry here: holding it across attempts is the peers' usual shape
        async with timeout(10.0), semaphore:
            return await inner()

    return case


def _peers_sync() -> Any:

    inner = tenacity.retry(stop=tenacity.stop_after_attempt(3))(circuit(failure_threshold=5, recovery_timeout=30)(fn))
    semaphore = threading.BoundedSemaphore(10)

    def case() -> int:
        with semaphore:
            return inner()

    return case


def cases() -> list[Case]:
    """Every row of this module."""
    return [
        Case(GROUP, STALWART_ASYNC, "async", lambda: _stalwart(afn), baseline=BARE_ASYNC, stalwart=True),
        Case(GROUP, HYX_ASYNC, "async", _hyx, baseline=BARE_ASYNC),
        Case(GROUP, PEERS_ASYNC, "async", _peers_async, baseline=BARE_ASYNC),
        Case(GROUP, HYX_ISSUE_ASYNC, "async", _hyx_issue, baseline=BARE_ASYNC),
        Case(GROUP, PEERS_ISSUE_ASYNC, "async", _peers_issue_async, baseline=BARE_ASYNC),
        Case(GROUP, STALWART_SYNC, "sync", lambda: _stalwart(fn), baseline=BARE_SYNC, stalwart=True),
        Case(GROUP, PEERS_SYNC, "sync", _peers_sync, baseline=BARE_SYNC),
    ]
