"""Regression: testing mode stayed on for good after two uses that overlapped without nesting.

What was wrong: ``stalwart.testing.testing`` saved the mode in force when it was entered and restored it when it
was exited, a stack that is only right for strictly nested uses. Uses overlap without nesting whenever tests run at
the same time: two ``async`` tests decorated with ``@testing(...)`` interleaving in one event loop, tests run in
threads (pytest-run-parallel, free-threaded builds). When the first use ended first it restored its saved ``None``
(turning the mode off under the second use, whose retries then slept for real), and when the second ended it
restored the *first* use's mode, which then stayed on for the rest of the process: every later test, and any code
the process runs afterwards, retried instantly and capped, with nothing to say so (stamina's process-wide testing
switch has the same shape; its issue #98 is the neighbouring "the cap is not applied" bug). Now each use ends only
itself: the mode is the one of the latest use still active, and none once all have ended.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import stalwart as sw
from stalwart import _retry_testing
from stalwart._retry_testing import current_mode
from stalwart.testing import FakeClock, testing


class Transient(Exception):
    pass


@pytest.fixture(autouse=True)
def _no_mode_leaks_into_other_tests() -> Iterator[None]:
    yield
    _retry_testing._active.clear()  # a regression here must fail these tests, not every test after them
    _retry_testing._mode = None


def attempts_made() -> int:
    """How many attempts a Retry (max_attempts=5) makes on an always-failing call, under the current mode."""
    calls = []

    def down() -> None:
        calls.append(1)
        raise Transient

    with pytest.raises(Transient):
        sw.Retry(on=Transient, max_attempts=5, clock=FakeClock()).call(down)
    return len(calls)


def test_the_first_use_ending_first_leaves_the_second_in_force_and_then_nothing() -> None:
    first, second = testing(attempts=2), testing(attempts=3)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert attempts_made() == 3  # the second use is still active: its mode, not "off"
    second.__exit__(None, None, None)
    assert current_mode() is None
    assert attempts_made() == 5


def test_interleaved_async_tests_leave_no_mode_behind() -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}

    @testing(attempts=2)
    async def test_a(a_started: asyncio.Event, b_started: asyncio.Event) -> None:
        a_started.set()
        await b_started.wait()
        seen["a"].append(attempts_made())

    @testing(attempts=3)
    async def test_b(a_started: asyncio.Event, b_started: asyncio.Event) -> None:
        await a_started.wait()
        b_started.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # test_a has ended by now
        seen["b"].append(attempts_made())

    async def both() -> None:
        a_started, b_started = asyncio.Event(), asyncio.Event()
        await asyncio.gather(test_a(a_started, b_started), test_b(a_started, b_started))

    asyncio.run(both())
    assert seen["a"] == [3]  # the latest use active wins while both are on
    assert seen["b"] == [3]  # still on after test_a ended first
    assert current_mode() is None


def test_one_instance_used_by_overlapping_threads() -> None:
    fast = testing(attempts=2)
    inside = threading.Barrier(2)
    first_done = threading.Event()
    counts: list[int] = []

    def first() -> None:
        with fast:
            inside.wait()
        first_done.set()

    def second() -> None:
        with fast:
            inside.wait()
            first_done.wait()
            counts.append(attempts_made())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == [2]
    assert current_mode() is None


def test_nested_uses_still_restore_the_outer_mode() -> None:
    with testing(attempts=3):
        with testing(attempts=1):
            assert attempts_made() == 1
        assert attempts_made() == 3
    assert current_mode() is None
