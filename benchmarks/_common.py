"""Shared pieces of the benchmark modules: the measured functions, the bare-call baselines, stalwart look-ups."""

from __future__ import annotations

import importlib
from typing import Any

from _harness import Case, Unavailable

import stalwart

__all__ = [
    "BARE_ASYNC",
    "BARE_SYNC",
    "afn",
    "bare_cases",
    "fn",
    "stalwart_name",
]

BARE_SYNC = "bare call (sync)"
BARE_ASYNC = "bare call (async)"

# Where each stalwart name lives if it is not yet re-exported from the package (docs/internals.md, DESIGN.md §3).
_HOMES = {
    "Retry": "stalwart._retry",
    "RetryBudget": "stalwart._budget",
    "Backoff": "stalwart._backoff",
    "Jitter": "stalwart._backoff",
    "CircuitBreaker": "stalwart._breaker",
    "CountWindow": "stalwart._windows",
    "TimeWindow": "stalwart._windows",
    "Timeout": "stalwart._timeout",
    "Bulkhead": "stalwart._bulkhead",
    "Pipeline": "stalwart._pipeline",
    "AsyncResilientTransport": "stalwart.httpx",
    "ResilientTransport": "stalwart.httpx",
    "ResilienceConfig": "stalwart.httpx",
    "CircuitOpenError": "stalwart._exceptions",
    "deadline": "stalwart._deadline",
}


def stalwart_name(name: str) -> Any:
    """Return ``stalwart.<name>`` (or its private home); raise :class:`Unavailable` if it does not exist yet."""
    obj = getattr(stalwart, name, None)
    if obj is not None:
        return obj
    home = _HOMES.get(name)
    if home is not None:
        try:
            module = importlib.import_module(home)
        except ImportError as exc:
            raise Unavailable(f"stalwart.{name} not available ({home}: {exc})") from exc
        obj = getattr(module, name, None)
        if obj is not None:
            return obj
    raise Unavailable(f"stalwart.{name} not available yet")


def fn() -> int:
    """The measured sync function: as cheap as a call gets."""
    return 1


async def afn() -> int:
    """The measured async function: as cheap as a coroutine gets."""
    return 1


def _bare_sync() -> Any:
    def f() -> int:
        return 1

    return f


def _bare_async() -> Any:
    async def f() -> int:
        return 1

    return f


def bare_cases() -> list[Case]:
    """The two baselines every ratio "x bare" refers to."""
    return [
        Case("bare", BARE_SYNC, "sync", _bare_sync),
        Case("bare", BARE_ASYNC, "async", _bare_async),
    ]
