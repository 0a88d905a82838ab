"""Circuit breakers: the CLOSED success path, and the OPEN rejection (fail-fast) cost.

CLOSED rows (a call that succeeds through a closed breaker): stalwart ``CircuitBreaker`` in its three models
(consecutive failures, ``CountWindow(100)``, ``TimeWindow(60.0)``); circuitbreaker ``@circuit``; pybreaker
``CircuitBreaker`` (sync only: its async support needs Tornado); aiobreaker ``CircuitBreaker`` (async); purgatory's
in-memory ``SyncCircuitBreakerFactory`` / ``AsyncCircuitBreakerFactory``.

OPEN rows: the breaker was opened by one failure (threshold 1, an open period of 10⁶ s) and every call is rejected;
the row catches the breaker's rejection exception. The baseline is a bare ``raise`` + ``except`` of a fresh
``CircuitOpenError(name, retry_after)`` (the same exception stalwart raises, built per call), in a function of the
same shape; a bare ``raise RuntimeError()`` is shown beside it for scale. purgatory re-raises one shared exception
instance whose traceback grows with every rejection (~1.7 KB per call here), so its OPEN rows get a fresh open breaker
before every timed chunk, which bounds the memory; the cost reported is the average over one chunk's rejections.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiobreaker
import pybreaker
from _common import BARE_ASYNC, BARE_SYNC, afn, fn, stalwart_name
from _harness import Case, Unavailable
from circuitbreaker import CircuitBreakerError as CbError
from circuitbreaker import circuit
from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

GROUP = "breaker-closed"
OPEN_GROUP = "breaker-open"

STALWART_SYNC = "stalwart CircuitBreaker, consecutive (sync)"
STALWART_COUNT_SYNC = "stalwart CircuitBreaker, CountWindow(100) (sync)"
STALWART_TIME_SYNC = "stalwart CircuitBreaker, TimeWindow(60) (sync)"
STALWART_ASYNC = "stalwart CircuitBreaker, consecutive (async)"
STALWART_COUNT_ASYNC = "stalwart CircuitBreaker, CountWindow(100) (async)"
STALWART_TIME_ASYNC = "stalwart CircuitBreaker, TimeWindow(60) (async)"
STALWART_MODELS_SYNC = (STALWART_SYNC, STALWART_COUNT_SYNC, STALWART_TIME_SYNC)
STALWART_MODELS_ASYNC = (STALWART_ASYNC, STALWART_COUNT_ASYNC, STALWART_TIME_ASYNC)
PEERS_SYNC = ("circuitbreaker (sync)", "pybreaker (sync)", "purgatory (sync)")
PEERS_ASYNC = ("circuitbreaker (async)", "aiobreaker (async)", "purgatory (async)")

RAISE_SYNC = "bare raise+except CircuitOpenError (sync)"
RAISE_ASYNC = "bare raise+except CircuitOpenError (async)"
RAISE_PLAIN_SYNC = "bare raise+except RuntimeError() (sync)"
OPEN_STALWART_SYNC = "stalwart CircuitBreaker OPEN rejection (sync)"
OPEN_STALWART_ASYNC = "stalwart CircuitBreaker OPEN rejection (async)"
OPEN_PEERS_SYNC = ("circuitbreaker OPEN (sync)", "pybreaker OPEN (sync)", "purgatory OPEN (sync)")
OPEN_PEERS_ASYNC = ("circuitbreaker OPEN (async)", "aiobreaker OPEN (async)", "purgatory OPEN (async)")

_names = iter(range(1_000_000))


def _unique(prefix: str) -> str:
    return f"bench-{prefix}-{next(_names)}"


# --- CLOSED -------------------------------------------------------------------------------------------------------


def _stalwart(target: Any, model: str = "consecutive", **config: Any) -> Any:
    breaker_cls = stalwart_name("CircuitBreaker")
    if model == "count":
        config["window"] = stalwart_name("CountWindow")(100)
    elif model == "time":
        config["window"] = stalwart_name("TimeWindow")(60.0)
    return breaker_cls(_unique("cb"), **config)(target)


def _circuitbreaker(target: Any, **config: Any) -> Any:

    config.setdefault("failure_threshold", 5)
    config.setdefault("recovery_timeout", 30)
    return circuit(**config)(target)


def _pybreaker(target: Any, **config: Any) -> Any:

    config.setdefault("fail_max", 5)
    config.setdefault("reset_timeout", 30)
    return pybreaker.CircuitBreaker(**config)(target)


def _aiobreaker(target: Any, **config: Any) -> Any:

    config.setdefault("fail_max", 5)
    config.setdefault("timeout_duration", timedelta(seconds=30))
    return aiobreaker.CircuitBreaker(**config)(target)


def _purgatory_sync(target: Any, threshold: int = 5, ttl: float = 30) -> Any:

    factory = SyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=ttl)
    return factory(_unique("purgatory"))(target)


async def _purgatory_async(target: Any, threshold: int = 5, ttl: float = 30) -> Any:

    factory = AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=ttl)
    await factory.initialize()
    return factory(_unique("purgatory"))(target)


def _closed_cases() -> list[Case]:
    cases = []
    for name, make, stalwart in (
        (STALWART_SYNC, lambda: _stalwart(fn), True),
        (STALWART_COUNT_SYNC, lambda: _stalwart(fn, "count"), True),
        (STALWART_TIME_SYNC, lambda: _stalwart(fn, "time"), True),
        (PEERS_SYNC[0], lambda: _circuitbreaker(fn), False),
        (PEERS_SYNC[1], lambda: _pybreaker(fn), False),
        (PEERS_SYNC[2], lambda: _purgatory_sync(fn), False),
    ):
        cases.append(Case(GROUP, name, "sync", make, baseline=BARE_SYNC, stalwart=stalwart))
    for name, make, stalwart in (
        (STALWART_ASYNC, lambda: _stalwart(afn), True),
        (STALWART_COUNT_ASYNC, lambda: _stalwart(afn, "count"), True),
        (STALWART_TIME_ASYNC, lambda: _stalwart(afn, "time"), True),
        (PEERS_ASYNC[0], lambda: _circuitbreaker(afn), False),
        (PEERS_ASYNC[1], lambda: _aiobreaker(afn), False),
        (PEERS_ASYNC[2], lambda: _purgatory_async(afn), False),
    ):
        cases.append(Case(GROUP, name, "async", make, baseline=BARE_ASYNC, stalwart=stalwart))
    return cases


# --- OPEN ---------------------------------------------------------------------------------------------------------


class _Boom(Exception):
    pass


def _fail() -> int:
    raise _Boom


async def _afail() -> int:
    raise _Boom


def _open_sync(wrapped: Any, rejection: type[BaseException]) -> Any:
    """Trip ``wrapped``'s breaker, then return a row that calls it and catches the rejection."""
    for _ in range(10):
        try:
            wrapped()
        except rejection:
            break
        except _Boom:
            continue
    else:
        raise Unavailable("the breaker did not open after 10 failures")

    def case() -> int:
        try:
            wrapped()
        except rejection:
            return 1
        return 0

    return case


async def _open_async(wrapped: Any, rejection: type[BaseException]) -> Any:
    for _ in range(10):
        try:
            await wrapped()
        except rejection:
            break
        except _Boom:
            continue
    else:
        raise Unavailable("the breaker did not open after 10 failures")

    async def case() -> int:
        try:
            await wrapped()
        except rejection:
            return 1
        return 0

    return case


def _raise_sync() -> Any:
    error = stalwart_name("CircuitOpenError")

    def case() -> int:
        try:
            raise error("bench-open", 30.0)
        except error:
            return 1

    return case


def _raise_plain_sync() -> Any:
    def case() -> int:
        try:
            raise RuntimeError
        except RuntimeError:
            return 1

    return case


def _raise_async() -> Any:
    error = stalwart_name("CircuitOpenError")

    async def case() -> int:
        try:
            raise error("bench-open", 30.0)
        except error:
            return 1

    return case


def _stalwart_open(target: Any) -> Any:
    return _stalwart(target, failure_threshold=1, reset_timeout=1e6)


def _open_cases() -> list[Case]:
    cb_open = {"failure_threshold": 1, "recovery_timeout": 1e6, "expected_exception": _Boom}
    return [
        Case(OPEN_GROUP, RAISE_SYNC, "sync", _raise_sync, baseline=BARE_SYNC),
        Case(OPEN_GROUP, RAISE_PLAIN_SYNC, "sync", _raise_plain_sync, baseline=BARE_SYNC),
        Case(
            OPEN_GROUP,
            OPEN_STALWART_SYNC,
            "sync",
            lambda: _open_sync(_stalwart_open(_fail), stalwart_name("CircuitOpenError")),
            baseline=RAISE_SYNC,
            stalwart=True,
        ),
        Case(
            OPEN_GROUP,
            OPEN_PEERS_SYNC[0],
            "sync",
            lambda: _open_sync(_circuitbreaker(_fail, **cb_open), CbError),
            baseline=RAISE_SYNC,
        ),
        Case(
            OPEN_GROUP,
            OPEN_PEERS_SYNC[1],
            "sync",
            lambda: _open_sync(_pybreaker(_fail, fail_max=1, reset_timeout=1e6), pybreaker.CircuitBreakerError),
            baseline=RAISE_SYNC,
        ),
        Case(
            OPEN_GROUP,
            OPEN_PEERS_SYNC[2],
            "sync",
            lambda: _open_sync(_purgatory_sync(_fail, threshold=1, ttl=1e6), OpenedState),
            baseline=RAISE_SYNC,
            rebuild=True,
        ),
        Case(OPEN_GROUP, RAISE_ASYNC, "async", _raise_async, baseline=BARE_ASYNC),
        Case(
            OPEN_GROUP,
            OPEN_STALWART_ASYNC,
            "async",
            lambda: _open_async(_stalwart_open(_afail), stalwart_name("CircuitOpenError")),
            baseline=RAISE_ASYNC,
            stalwart=True,
        ),
        Case(
            OPEN_GROUP,
            OPEN_PEERS_ASYNC[0],
            "async",
            lambda: _open_async(_circuitbreaker(_afail, **cb_open), CbError),
            baseline=RAISE_ASYNC,
        ),
        Case(
            OPEN_GROUP,
            OPEN_PEERS_ASYNC[1],
            "async",
            lambda: _open_async(
                _aiobreaker(_afail, fail_max=1, timeout_duration=timedelta(seconds=1e6)), aiobreaker.CircuitBreakerError
            ),
            baseline=RAISE_ASYNC,
        ),
        Case(
            OPEN_GROUP,
            OPEN_PEERS_ASYNC[2],
            "async",
            lambda: _purgatory_open_async(OpenedState),
            baseline=RAISE_ASYNC,
            rebuild=True,
        ),
    ]


async def _purgatory_open_async(rejection: type[BaseException]) -> Any:
    wrapped = await _purgatory_async(_afail, threshold=1, ttl=1e6)
    return await _open_async(wrapped, rejection)


# --- a fresh exception per rejection -------------------------------------------------------------------------------


def _tb_depth(exc: BaseException) -> int:
    depth, tb = 0, exc.__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    return depth


def fresh_rejections(mode: str, calls: int = 5) -> tuple[bool, str]:
    """Reject ``calls`` calls through an open stalwart breaker; whether each raised its own exception object.

    Also checks that the traceback does not grow from one rejection to the next (purgatory's shared instance grows
    by a few frames per rejection). Not timed; the detail says what was seen.
    """
    error = stalwart_name("CircuitOpenError")
    seen: list[BaseException] = []
    if mode == "sync":
        wrapped = _stalwart_open(_fail)
        _open_sync(wrapped, error)  # trips the breaker
        for _ in range(calls):
            try:
                wrapped()
            except error as exc:
                seen.append(exc)
    else:
        import asyncio  # noqa: PLC0415

        async def run() -> None:
            wrapped = _stalwart_open(_afail)
            await _open_async(wrapped, error)
            for _ in range(calls):
                try:
                    await wrapped()
                except error as exc:
                    seen.append(exc)

        loop = asyncio.new_event_loop()  # its own loop: the global event loop is left alone
        try:
            loop.run_until_complete(run())
        finally:
            loop.close()
    distinct = len({id(e) for e in seen}) == len(seen) == calls
    depths = [_tb_depth(e) for e in seen]
    steady = len(set(depths)) == 1
    detail = (
        f"{len({id(e) for e in seen})} distinct exception objects for {calls} rejections; "
        f"traceback frames per rejection: {' '.join(map(str, depths))}"
    )
    return distinct and steady, detail


def cases() -> list[Case]:
    """Every row of this module."""
    return _closed_cases() + _open_cases()
