"""The block form: ``for attempt in retry.attempts(): with attempt: ...`` and its async twin, on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from stalwart import (
    Backoff,
    CircuitOpenError,
    Event,
    Jitter,
    Retry,
    RetryGaveUp,
    RetryScheduled,
    add_hook,
    deadline,
    remove_hook,
)
from stalwart.testing import FakeClock

NO_JITTER = Backoff.exponential(jitter=Jitter.NONE)


class Transient(OSError):
    pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    hook = seen.append
    add_hook(hook)
    yield seen
    remove_hook(hook)


def test_block_retries_until_it_completes(clock: FakeClock) -> None:
    numbers = []
    for attempt in Retry(on=OSError, max_attempts=5, backoff=NO_JITTER, clock=clock).attempts():
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise Transient(attempt.number)
    assert numbers == [1, 2, 3]
    assert clock.sleeps == [1.0, 2.0]


def test_block_that_succeeds_runs_once(clock: FakeClock) -> None:
    runs = 0
    for attempt in Retry(on=OSError, clock=clock).attempts():
        with attempt:
            runs += 1
    assert runs == 1
    assert clock.sleeps == []


def test_block_gives_up_with_the_last_exception_and_note(clock: FakeClock, events: list[Event]) -> None:
    raised: list[Transient] = []
    with pytest.raises(Transient) as info:  # noqa: PT012 - the loop is the code under test
        for attempt in Retry(on=OSError, backoff=NO_JITTER, clock=clock, name="blk").attempts():
            with attempt:
                raised.append(Transient(attempt.number))
                raise raised[-1]
    assert info.value is raised[-1]
    assert len(raised) == 3
    assert info.value.__notes__ == ["stalwart: 'blk' gave up after 3 attempts over 3.000s (no attempts left)"]
    assert [type(e) for e in events] == [RetryScheduled, RetryScheduled, RetryGaveUp]


def test_block_non_retryable_exception_propagates_from_the_block(clock: FakeClock) -> None:
    runs = 0
    with pytest.raises(KeyError):  # noqa: PT012
        for attempt in Retry(on=OSError, clock=clock).attempts():
            with attempt:
                runs += 1
                raise KeyError("k")
    assert runs == 1


def test_block_rejected_on_a_retry_ends_with_a_note(clock: FakeClock, events: list[Event]) -> None:
    opened = CircuitOpenError("db")
    with pytest.raises(CircuitOpenError) as info:  # noqa: PT012
        for attempt in Retry(on=Exception, max_attempts=5, backoff=NO_JITTER, clock=clock).attempts():
            with attempt:
                if attempt.number == 1:
                    raise Transient("down")
                raise opened
    assert info.value is opened
    assert "not retryable" in info.value.__notes__[0]
    assert isinstance(events[-1], RetryGaveUp)


def test_block_respects_the_deadline(clock: FakeClock) -> None:
    runs = 0
    with deadline(2.5, clock=clock), pytest.raises(Transient):  # noqa: PT012
        for attempt in Retry(on=OSError, max_attempts=10, backoff=NO_JITTER, clock=clock).attempts():
            with attempt:
                runs += 1
                raise Transient
    assert runs == 2
    assert clock.sleeps == [1.0]


def test_keyboard_interrupt_in_a_block_is_not_retried(clock: FakeClock) -> None:
    runs = 0
    with pytest.raises(KeyboardInterrupt):  # noqa: PT012
        for attempt in Retry(on=BaseException, clock=clock).attempts():
            with attempt:
                runs += 1
                raise KeyboardInterrupt
    assert runs == 1


def test_each_attempts_call_is_a_new_retrying_call(clock: FakeClock) -> None:
    retry = Retry(on=OSError, max_attempts=2, backoff=Backoff.constant(0.5), clock=clock)
    for _ in range(2):
        runs = 0
        for attempt in retry.attempts():
            with attempt:
                runs += 1
                if runs == 1:
                    raise Transient
        assert runs == 2
    assert clock.sleeps == [0.5, 0.5]


async def test_async_for_async_with(clock: FakeClock) -> None:
    numbers = []
    async for attempt in Retry(on=OSError, max_attempts=4, backoff=NO_JITTER, clock=clock).attempts():
        async with attempt:
            numbers.append(attempt.number)
            await asyncio.sleep(0)
            if attempt.number < 4:
                raise Transient
    assert numbers == [1, 2, 3, 4]
    assert clock.sleeps == [1.0, 2.0, 4.0]


async def test_async_for_with_sync_with_and_give_up(clock: FakeClock) -> None:
    last: list[Transient] = []
    with pytest.raises(Transient) as info:  # noqa: PT012
        async for attempt in Retry(on=OSError, max_attempts=2, backoff=NO_JITTER, clock=clock).attempts():
            with attempt:
                last.append(Transient())
                raise last[-1]
    assert info.value is last[-1]
    assert clock.sleeps == [1.0]


async def test_async_cancellation_in_the_block_propagates(clock: FakeClock) -> None:
    runs = 0

    async def body() -> None:
        nonlocal runs
        async for attempt in Retry(on=BaseException, clock=clock).attempts():
            async with attempt:
                runs += 1
                await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == 1


class FakeBudget:
    name = "b"

    def __init__(self) -> None:
        self.log: list[tuple[str, bool]] = []

    def record_success(self, first: bool) -> None:
        self.log.append(("success", first))

    def record_failure(self, first: bool) -> None:
        self.log.append(("failure", first))

    def try_acquire_retry(self) -> bool:
        self.log.append(("acquire", True))
        return True


def test_block_uses_the_budget_hooks(clock: FakeClock) -> None:
    budget = FakeBudget()
    for attempt in Retry(on=OSError, budget=budget, clock=clock).attempts():
        with attempt:
            if attempt.number == 1:
                raise Transient
    assert budget.log == [("failure", True), ("acquire", True), ("success", False)]
