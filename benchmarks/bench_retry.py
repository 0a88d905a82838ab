"""Retry, success path: one call that succeeds at once, under each retry library (sync and async).

Rows: stalwart ``Retry(on=Exception)``; tenacity ``@retry(stop=stop_after_attempt(3))``; stamina
``@stamina.retry(on=Exception, attempts=3)``; backoff ``@backoff.on_exception(backoff.expo, Exception, max_tries=3)``;
hyx ``@retry(on=Exception, attempts=3)`` (async only: hyx 0.0.2's ``retry`` wraps coroutine functions only).

A second table, the failure path: every attempt fails, 3 attempts, zero delay between them (stalwart with a constant
zero backoff, tenacity with its default ``wait_none``, stamina with ``wait_initial=wait_max=wait_jitter=0`` and its
instrumentation hooks off, as stalwart's are when no hook is installed). Each call ends in the last exception,
caught by the row.
"""

from __future__ import annotations

from typing import Any

import backoff
import stamina
import stamina.instrumentation
import tenacity
from _common import BARE_ASYNC, BARE_SYNC, afn, fn, stalwart_name
from _harness import Case
from hyx.retry import retry as hyx_retry

GROUP = "retry"
FAIL_GROUP = "retry-failure"

STALWART_SYNC = "stalwart Retry (sync)"
STALWART_ASYNC = "stalwart Retry (async)"
PEERS_SYNC = ("tenacity (sync)", "stamina (sync)", "backoff (sync)")
PEERS_ASYNC = ("tenacity (async)", "stamina (async)", "backoff (async)", "hyx retry (async)")

FAIL_STALWART_SYNC = "stalwart Retry, 3 failing attempts (sync)"
FAIL_STALWART_ASYNC = "stalwart Retry, 3 failing attempts (async)"
FAIL_PEERS_SYNC = ("tenacity, 3 failing attempts (sync)", "stamina, 3 failing attempts (sync)")
FAIL_PEERS_ASYNC = ("tenacity, 3 failing attempts (async)", "stamina, 3 failing attempts (async)")


def _stalwart(target: Any) -> Any:
    retry = stalwart_name("Retry")
    return retry(on=Exception)(target)


def _tenacity(target: Any) -> Any:

    return tenacity.retry(stop=tenacity.stop_after_attempt(3))(target)


def _stamina(target: Any) -> Any:

    return stamina.retry(on=Exception, attempts=3)(target)


def _backoff(target: Any) -> Any:

    return backoff.on_exception(backoff.expo, Exception, max_tries=3)(target)


def _hyx(target: Any) -> Any:

    return hyx_retry(on=Exception, attempts=3)(target)


def _success_cases() -> list[Case]:
    cases = []
    for name, make, stalwart in (
        (STALWART_SYNC, lambda: _stalwart(fn), True),
        (PEERS_SYNC[0], lambda: _tenacity(fn), False),
        (PEERS_SYNC[1], lambda: _stamina(fn), False),
        (PEERS_SYNC[2], lambda: _backoff(fn), False),
    ):
        cases.append(Case(GROUP, name, "sync", make, baseline=BARE_SYNC, stalwart=stalwart))
    for name, make, stalwart in (
        (STALWART_ASYNC, lambda: _stalwart(afn), True),
        (PEERS_ASYNC[0], lambda: _tenacity(afn), False),
        (PEERS_ASYNC[1], lambda: _stamina(afn), False),
        (PEERS_ASYNC[2], lambda: _backoff(afn), False),
        (PEERS_ASYNC[3], lambda: _hyx(afn), False),
    ):
        cases.append(Case(GROUP, name, "async", make, baseline=BARE_ASYNC, stalwart=stalwart))
    return cases


# --- failure path -------------------------------------------------------------------------------------------------


class _Boom(Exception):
    pass


def _fail() -> int:
    raise _Boom


async def _afail() -> int:
    raise _Boom


def _catching(wrapped: Any) -> Any:
    def case() -> int:
        try:
            wrapped()
        except _Boom:
            return 1
        return 0

    return case


def _acatching(wrapped: Any) -> Any:
    async def case() -> int:
        try:
            await wrapped()
        except _Boom:
            return 1
        return 0

    return case


def _stalwart_fail(target: Any) -> Any:
    retry = stalwart_name("Retry")
    backoff = stalwart_name("Backoff")
    return retry(on=_Boom, backoff=backoff.constant(0.0))(target)


def _tenacity_fail(target: Any) -> Any:

    return tenacity.retry(stop=tenacity.stop_after_attempt(3), reraise=True)(target)


def _stamina_fail(target: Any) -> Any:

    stamina.instrumentation.set_on_retry_hooks([])
    return stamina.retry(on=_Boom, attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)(target)


def _failure_cases() -> list[Case]:
    cases = []
    for name, make, stalwart in (
        (FAIL_STALWART_SYNC, lambda: _catching(_stalwart_fail(_fail)), True),
        (FAIL_PEERS_SYNC[0], lambda: _catching(_tenacity_fail(_fail)), False),
        (FAIL_PEERS_SYNC[1], lambda: _catching(_stamina_fail(_fail)), False),
    ):
        cases.append(Case(FAIL_GROUP, name, "sync", make, baseline=BARE_SYNC, stalwart=stalwart))
    for name, make, stalwart in (
        (FAIL_STALWART_ASYNC, lambda: _acatching(_stalwart_fail(_afail)), True),
        (FAIL_PEERS_ASYNC[0], lambda: _acatching(_tenacity_fail(_afail)), False),
        (FAIL_PEERS_ASYNC[1], lambda: _acatching(_stamina_fail(_afail)), False),
    ):
        cases.append(Case(FAIL_GROUP, name, "async", make, baseline=BARE_ASYNC, stalwart=stalwart))
    return cases


def cases() -> list[Case]:
    """Every row of this module."""
    return _success_cases() + _failure_cases()
