"""``stalwart.testing.testing()``: instant, capped retries for users' test suites."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from stalwart import Backoff, Retry
from stalwart._retry_testing import current_mode
from stalwart.testing import FakeClock, testing


class Transient(OSError):
    pass


def failing(counter: list[int]) -> Any:
    def fn() -> None:
        counter.append(1)
        raise Transient(len(counter))

    return fn


def test_caps_attempts_and_does_not_sleep() -> None:
    clock = FakeClock()
    calls: list[int] = []
    retry = Retry(on=OSError, max_attempts=10, backoff=Backoff.constant(30.0), clock=clock)
    with testing(attempts=2), pytest.raises(Transient) as info:
        retry.call(failing(calls))
    assert len(calls) == 2
    assert clock.sleeps == []
    assert "2 attempts" in info.value.__notes__[0]


def test_real_clock_retries_instantly() -> None:
    # With the system clock, a 60 s backoff would hang the test (pytest-timeout would fail it).
    calls: list[int] = []
    retry = Retry(on=OSError, max_attempts=3, backoff=Backoff.constant(60.0))
    with testing(), pytest.raises(Transient):
        retry.call(failing(calls))
    assert len(calls) == 3


def test_attempts_none_keeps_the_policy_limit_and_cap_never_raises_it() -> None:
    calls: list[int] = []
    with testing(attempts=None), pytest.raises(Transient):
        Retry(on=OSError, max_attempts=4, clock=FakeClock()).call(failing(calls))
    assert len(calls) == 4
    calls.clear()
    with testing(attempts=50), pytest.raises(Transient):
        Retry(on=OSError, max_attempts=2, clock=FakeClock()).call(failing(calls))
    assert len(calls) == 2


def test_attempts_one_disables_retries() -> None:
    calls: list[int] = []
    with testing(attempts=1), pytest.raises(Transient):
        Retry(on=OSError, clock=FakeClock()).call(failing(calls))
    assert len(calls) == 1


def test_no_sleep_false_keeps_the_delays() -> None:
    clock = FakeClock()
    calls: list[int] = []
    with testing(attempts=3, no_sleep=False), pytest.raises(Transient):
        Retry(on=OSError, max_attempts=5, backoff=Backoff.constant(2.0), clock=clock).call(failing(calls))
    assert clock.sleeps == [2.0, 2.0]


def test_server_pushback_is_ignored_in_no_sleep_mode() -> None:
    clock = FakeClock()
    calls: list[int] = []
    retry = Retry(on=OSError, backoff=Backoff.constant(0.0), retry_after=lambda exc: 3600.0, clock=clock)
    with testing(), pytest.raises(Transient):
        retry.call(failing(calls))
    assert len(calls) == 3  # 3600 s > max_retry_after would otherwise give up after the first attempt


async def test_async_and_block_forms() -> None:
    clock = FakeClock()
    retry = Retry(on=OSError, max_attempts=5, backoff=Backoff.constant(10.0), clock=clock)
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise Transient

    with testing(attempts=2):
        with pytest.raises(Transient):
            await retry.run(fn)
        runs = 0
        with pytest.raises(Transient):  # noqa: PT012
            async for attempt in retry.attempts():
                async with attempt:
                    runs += 1
                    raise Transient
    assert calls == 2
    assert runs == 2
    assert clock.sleeps == [0.0, 0.0]  # async sleeps still yield to the loop, for zero seconds


def test_nesting_restores_the_outer_mode_and_exceptions_restore_too() -> None:
    assert current_mode() is None
    with testing(attempts=3):
        with testing(attempts=1):
            assert current_mode().attempts == 1  # type: ignore[union-attr]
        assert current_mode().attempts == 3  # type: ignore[union-attr]
        with pytest.raises(RuntimeError), testing(attempts=2):
            raise RuntimeError
        assert current_mode().attempts == 3  # type: ignore[union-attr]
    assert current_mode() is None


def test_visible_from_threads() -> None:
    calls: list[int] = []

    def worker() -> None:
        try:
            Retry(on=OSError, max_attempts=9, backoff=Backoff.constant(60.0)).call(failing(calls))
        except Transient:
            pass

    with testing(attempts=2):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert len(calls) == 2


def test_usable_as_a_decorator() -> None:
    calls: list[int] = []

    @testing(attempts=2)
    def check() -> None:
        with pytest.raises(Transient):
            Retry(on=OSError, max_attempts=5, backoff=Backoff.constant(60.0)).call(failing(calls))

    check()  # a real 60 s sleep would trip pytest-timeout
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("kw", "error"),
    [({"attempts": 0}, ValueError), ({"attempts": 1.5}, TypeError), ({"no_sleep": 1}, TypeError)],
)
def test_invalid_arguments(kw: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error), testing(**kw):
        pass
    assert current_mode() is None


def test_not_collected_by_pytest() -> None:
    assert testing.__test__ is False  # type: ignore[attr-defined]
