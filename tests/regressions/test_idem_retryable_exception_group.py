"""Regression: ``retryable_exceptions`` was not recognised inside an exception group.

A handler fanning out with ``asyncio.TaskGroup`` (or anyio, trio) raises an ``ExceptionGroup`` wrapping its tasks'
errors. The middleware matched ``retryable_exceptions`` with ``isinstance`` on the group itself, so a group made only
of retryable errors ("not applied, retry", spec §2.9) was stored as a 500 ``idempotency-handler-error`` and replayed
for the whole retention instead of releasing the key. As elsewhere in the library (exception groups made only of a
kind count as that kind), a group — nested groups included — whose leaves are all retryable now releases the
record; a group with any other leaf is stored as an exception, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _idem_asgi import CountingApp, post, wrap

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware


class NotApplied(Exception):
    pass


class ProviderBusy(NotApplied):
    pass


async def _raise(exc: BaseException) -> None:
    raise exc


def fan_out(*errors: BaseException) -> Any:
    async def run() -> None:
        async with asyncio.TaskGroup() as tg:
            for error in errors:
                tg.create_task(_raise(error))

    return run


def nested_all_retryable() -> Any:
    async def run() -> None:
        raise ExceptionGroup("outer", [NotApplied("a"), ExceptionGroup("inner", [ProviderBusy("b"), NotApplied("c")])])

    return run


def nested_one_other() -> Any:
    async def run() -> None:
        raise ExceptionGroup("outer", [NotApplied("a"), ExceptionGroup("inner", [ValueError("bug")])])

    return run


def app_failing_first(first: Any) -> CountingApp:
    """Its first run awaits ``first()`` (which raises); later runs answer 201."""

    async def run_first(send: Any) -> None:
        await first()

    return CountingApp(first=run_first)


async def call(mw: IdempotencyMiddleware) -> int:
    answer = await post(mw, swallow=Exception)  # re-raised to the server after the record was settled
    return answer.status if answer.status is not None else 0


def middleware(app: CountingApp) -> IdempotencyMiddleware:
    return wrap(app, config=IdempotencyConfig(retryable_exceptions=(NotApplied,)))


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(fan_out(NotApplied("a")), id="one_task"),
        pytest.param(fan_out(NotApplied("a"), ProviderBusy("b")), id="two_tasks"),
        pytest.param(nested_all_retryable(), id="nested"),
    ],
)
async def test_a_group_made_only_of_retryable_errors_releases_the_key(first: Any) -> None:
    app = app_failing_first(first)
    mw = middleware(app)
    await call(mw)
    assert await call(mw) == 201  # released: the retry runs the handler
    assert app.calls == 2


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(fan_out(NotApplied("a"), ValueError("bug")), id="flat"),
        pytest.param(nested_one_other(), id="nested"),
    ],
)
async def test_a_group_with_another_error_is_stored_as_an_exception(first: Any) -> None:
    app = app_failing_first(first)
    mw = middleware(app)
    assert await call(mw) == 500
    assert await call(mw) == 500  # the stored handler error is replayed; the handler does not run again
    assert app.calls == 1
