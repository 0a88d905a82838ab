"""Regression: ``@testing(...)`` on an ``async def`` test was a silent no-op.

What was wrong: ``stalwart.testing.testing`` was a ``contextlib.contextmanager``, whose decorator form wraps any
function in a *sync* wrapper: for a coroutine function the mode was switched on, the coroutine object was created,
and the mode was switched off again before a single line of the test ran. The test then retried with real backoff
sleeps and its own attempt limits, with nothing to say the decorator had been ignored (the same trap as tenacity
issue #132: a decorator that treats a coroutine-returning function as a sync one). Now ``testing`` is a class: a
sync and async context manager, and a decorator that keeps the mode on for the whole run of an async test.
"""

from __future__ import annotations

import asyncio

import pytest

import stalwart as sw
from stalwart._retry_testing import current_mode
from stalwart.testing import FakeClock, testing


class Transient(Exception):
    pass


async def test_the_mode_is_on_while_a_decorated_async_test_awaits() -> None:
    seen = []

    @testing(attempts=2)
    async def a_users_test() -> None:
        await asyncio.sleep(0)
        seen.append(current_mode())

    await a_users_test()
    assert seen[0] is not None
    assert seen[0].attempts == 2
    assert current_mode() is None


async def test_a_decorated_async_test_retries_instantly_and_capped() -> None:
    clock = FakeClock()
    calls = []

    async def flaky() -> None:
        calls.append(1)
        raise Transient

    @testing(attempts=2)
    async def a_users_test() -> None:
        with pytest.raises(Transient):
            await sw.Retry(on=Transient, max_attempts=5, clock=clock).run(flaky)

    await a_users_test()
    assert len(calls) == 2
    assert clock.sleeps == [0.0]


async def test_async_with_and_nesting_restore_the_outer_mode() -> None:
    async with testing(attempts=3):
        with testing(attempts=1):
            assert current_mode().attempts == 1  # type: ignore[union-attr]
        assert current_mode().attempts == 3  # type: ignore[union-attr]
    assert current_mode() is None


def test_sync_decorator_still_works_and_keeps_the_signature() -> None:
    @testing(attempts=1)
    def a_users_test(value: int) -> int:
        assert current_mode().attempts == 1  # type: ignore[union-attr]
        return value

    assert a_users_test(7) == 7
    assert a_users_test.__name__ == "a_users_test"
    assert current_mode() is None


def test_invalid_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="attempts"):
        testing(attempts=0)
