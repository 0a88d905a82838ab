"""Retry, success path: one call that succeeds at once, under each retry library (sync and async).

Rows: stalwart ``Retry(on=Exception)``; tenacity ``@retry(stop=stop_after_attempt(3))``; stamina
``@stamina.retry(on=Exception, attempts=3)``; backoff ``@backoff.on_exception(backoff.expo, Exception, max_tries=3)``;
hyx ``@retry(on=Exception, attempts=3)`` (async only: hyx 0.0.2's ``retry`` wraps coroutine functions only).

A second table, the failure path: every attempt fails, 3 attempts, zero delay between them (stalwart with a constant
zero backoff, tenacity with its default ``wait_none``, stamina with ``wait_initial=wait_max=wait_jitter=0`` and its
instrumentation hooks off, as stalwart's are when no hook is installed). Each call ends in the last exception,
caught by the row.

A third table, the retry budget's bookkeeping on the success path (issue 4): stalwart ``Retry(on=Exception)``
without a budget, with a token-bucket ``RetryBudget()`` (gRPC retry throttling, default settings) and with a ratio
budget ``RetryBudget.ratio()`` (Finagle style, default settings), every call succeeding at once, so each call pays
the budget's ``record_success`` and nothing else. The rows run back to back in one group so their per-round ratios
pair closely timed chunks.
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
BUDGET_GROUP = "retry-budget"

STALWART_SYNC = "stalwart Retry (sync)"
STALWART_ASYNC = "stalwart Retry (async)"
PEERS_SYNC = ("tenacity (sync)", "stamina (sync)", "backoff (sync)")
PEERS_ASYNC = ("tenacity (async)", "stamina (async)", "backoff (async)", "hyx retry (async)")

FAIL_STALWART_SYNC = "stalwart Retry, 3 failing attempts (sync)"
FAIL_STALWART_ASYNC = "stalwart Retry, 3 failing attempts (async)"
FAIL_PEERS_SYNC = ("tenacity, 3 failing attempts (sync)", "stamina, 3 failing attempts (sync)")
FAIL_PEERS_ASYNC = ("tenacity, 3 failing attempts (async)", "stamina, 3 failing attempts (async)")

NO_BUDGET_SYNC = "stalwart Retry, no budget (sync)"
TOKEN_BUDGET_SYNC = "stalwart Retry + RetryBudget() (sync)"
RATIO_BUDGET_SYNC = "stalwart Retry + RetryBudget.ratio() (sync)"
NO_BUDGET_ASYNC = "stalwart Retry, no budget (async)"
TOKEN_BUDGET_ASYNC = "stalwart Retry + RetryBudget() (async)"
RATIO_BUDGET_ASYNC = "stalwart Retry + RetryBudget.ratio() (async)"
BUDGET_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("RetryBudget(), sync", TOKEN_BUDGET_SYNC, NO_BUDGET_SYNC),
    ("RetryBudget.ratio(), sync", RATIO_BUDGET_SYNC, NO_BUDGET_SYNC),
    ("RetryBudget(), async", TOKEN_BUDGET_ASYNC, NO_BUDGET_ASYNC),
    ("RetryBudget.ratio(), async", RATIO_BUDGET_ASYNC, NO_BUDGET_ASYNC),
)
"""``(label, Retry with a budget, the same Retry without one)``: the budget's share of the success-path overhead."""


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


# --- retry budget bookkeeping ---------------------------------------------------------------------------------------


def _stalwart_budget(target: Any, kind: str | None) -> Any:
    retry = stalwart_name("Retry")
    if kind is None:
        return retry(on=Exception)(target)
    budget_cls = stalwart_name("RetryBudget")
    budget = budget_cls() if kind == "token" else budget_cls.ratio()
    return retry(on=Exception, budget=budget)(target)


def _budget_cases() -> list[Case]:
    cases = []
    for mode, target, bare, rows in (
        ("sync", fn, BARE_SYNC, ((NO_BUDGET_SYNC, None), (TOKEN_BUDGET_SYNC, "token"), (RATIO_BUDGET_SYNC, "ratio"))),
        (
            "async",
            afn,
            BARE_ASYNC,
            ((NO_BUDGET_ASYNC, None), (TOKEN_BUDGET_ASYNC, "token"), (RATIO_BUDGET_ASYNC, "ratio")),
        ),
    ):
        for name, kind in rows:
            cases.append(
                Case(
                    BUDGET_GROUP,
                    name,
                    mode,
                    lambda target=target, kind=kind: _stalwart_budget(target, kind),
                    baseline=bare,
                    stalwart=True,
                )
            )
    return cases


def cases() -> list[Case]:
    """Every row of this module."""
    return _success_cases() + _failure_cases() + _budget_cases()
