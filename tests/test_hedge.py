"""Hedge: hedged requests (async only), driven by a manual clock and attempts the test finishes by hand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart import (
    Bulkhead,
    BulkheadFullError,
    CircuitOpenError,
    Event,
    Hedge,
    HedgeStarted,
    Pipeline,
    RetryBudget,
    RetryBudgetExhausted,
    RetryGaveUp,
    add_hook,
    deadline,
    remove_hook,
)
from stalwart._hedge import PercentileDelay
from stalwart.testing import FakeClock, testing


class ManualClock:
    """A clock whose ``asleep`` waits until the test advances the time past its end."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError("a hedge never sleeps synchronously")

    async def asleep(self, seconds: float) -> None:
        if seconds <= 0.0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    @property
    def sleeping(self) -> int:
        return sum(1 for _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for at, future in self._sleepers:
            if at <= self.now and not future.done():
                future.set_result(None)
        await settle()


async def settle() -> None:
    """Let every ready task run until nothing is left to do (a bounded number of loop turns)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Transient(OSError):
    pass


class Backend:
    """Each call is an attempt that waits until the test finishes it."""

    def __init__(self) -> None:
        self.calls: list[asyncio.Future[Any]] = []
        self.cancelled: list[int] = []
        self.stubborn: set[int] = set()  # attempts that return a value even when cancelled
        self.returned: list[Any] = []  # every value an attempt returned

    async def __call__(self, *args: Any) -> Any:
        number = len(self.calls) + 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.calls.append(future)
        try:
            value = await future
        except asyncio.CancelledError:
            self.cancelled.append(number)
            if number not in self.stubborn:
                raise
            value = f"late-{number}"
        self.returned.append(value)
        return value

    def answer(self, number: int, value: Any) -> None:
        self.calls[number - 1].set_result(value)

    def fail(self, number: int, exc: BaseException) -> None:
        self.calls[number - 1].set_exception(exc)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    add_hook(seen.append)
    yield seen
    remove_hook(seen.append)


def no_other_tasks() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


async def start(hedge: Hedge, fn: Any, *args: Any) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(hedge.run(fn, *args))
    await settle()
    return task


# ------------------------------------------------------------------ the latency race


async def test_a_fast_primary_is_not_hedged(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(1.0, clock=clock), backend)
    assert len(backend.calls) == 1
    backend.answer(1, "first")
    assert await task == "first"
    assert len(backend.calls) == 1
    assert no_other_tasks()  # the timer too is gone


async def test_a_slow_primary_is_hedged_after_the_delay_and_the_loser_cancelled(
    clock: ManualClock, backend: Backend
) -> None:
    task = await start(Hedge(1.0, clock=clock), backend)
    await clock.advance(0.5)
    assert len(backend.calls) == 1
    await clock.advance(0.5)
    assert len(backend.calls) == 2
    backend.answer(2, "hedge")
    assert await task == "hedge"
    assert backend.cancelled == [1]
    assert no_other_tasks()


async def test_the_primary_may_still_win_after_a_hedge_started(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(1.0, clock=clock), backend)
    await clock.advance(1.0)
    backend.answer(1, "primary")
    assert await task == "primary"
    assert backend.cancelled == [2]
    assert no_other_tasks()


@pytest.mark.parametrize("max_hedged", [1, 2, 3])
async def test_at_most_max_hedged_extra_attempts_one_per_delay(
    clock: ManualClock, backend: Backend, max_hedged: int
) -> None:
    task = await start(Hedge(1.0, max_hedged, clock=clock), backend)
    for expected in range(2, max_hedged + 2):
        await clock.advance(1.0)
        assert len(backend.calls) == expected
    await clock.advance(10.0)
    assert len(backend.calls) == max_hedged + 1
    assert clock.sleeping == 0  # no timer once no attempt may start
    backend.answer(max_hedged + 1, "last")
    assert await task == "last"
    assert sorted(backend.cancelled) == list(range(1, max_hedged + 1))


async def test_a_zero_delay_starts_every_attempt_at_once(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(0, 2, clock=clock), backend)
    assert len(backend.calls) == 3
    backend.answer(2, "b")
    assert await task == "b"
    assert sorted(backend.cancelled) == [1, 3]


async def test_when_two_answer_together_the_first_to_end_wins_and_the_other_is_discarded(
    clock: ManualClock, backend: Backend
) -> None:
    # Both end before the caller's task wakes up: outcomes are judged in the order the attempts ended, whatever
    # their age (the hedge ended first here).
    discarded: list[Any] = []
    task = await start(Hedge(1.0, clock=clock, on_discard=discarded.append), backend)
    await clock.advance(1.0)
    backend.answer(2, "b")
    backend.answer(1, "a")
    assert await task == "b"
    assert discarded == ["a"]
    assert backend.cancelled == []


async def test_a_loser_that_answers_despite_cancellation_is_discarded(clock: ManualClock, backend: Backend) -> None:
    discarded: list[Any] = []
    backend.stubborn.add(1)
    task = await start(Hedge(1.0, clock=clock, on_discard=discarded.append), backend)
    await clock.advance(1.0)
    backend.answer(2, "b")
    assert await task == "b"
    assert discarded == ["late-1"]


async def test_the_system_clock_uses_a_loop_timer(backend: Backend) -> None:
    task = await start(Hedge(0.0), backend)  # call_later(0): the hedge starts on the next loop turn
    assert len(backend.calls) == 2
    backend.answer(1, "a")
    assert await task == "a"
    assert backend.cancelled == [2]
    assert no_other_tasks()


async def test_a_long_delay_on_the_system_clock_leaves_no_timer(backend: Backend) -> None:
    loop = asyncio.get_running_loop()
    task = await start(Hedge(3600.0), backend)
    backend.answer(1, "a")
    assert await task == "a"
    assert not [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]


async def test_each_hedge_emits_hedge_started_with_its_reason(
    clock: ManualClock, backend: Backend, events: list[Event]
) -> None:
    task = await start(Hedge(1.0, 2, on=Transient, name="reads", clock=clock), backend)
    await clock.advance(1.0)  # the delay passed: attempt 2
    backend.fail(2, Transient("busy"))  # handled: attempt 3 at once
    await settle()
    backend.answer(1, "primary")
    assert await task == "primary"
    started = [event for event in events if isinstance(event, HedgeStarted)]
    assert started == [HedgeStarted("reads", 2, 1.0, "delay"), HedgeStarted("reads", 3, 1.0, "failure")]


async def test_an_unhedged_call_emits_no_hedge_started(
    clock: ManualClock, backend: Backend, events: list[Event]
) -> None:
    task = await start(Hedge(1.0, clock=clock), backend)
    backend.answer(1, "first")
    assert await task == "first"
    assert not any(isinstance(event, HedgeStarted) for event in events)


# ------------------------------------------------------------------ outcomes: answers and handled failures


async def test_by_default_an_exception_is_the_answer_and_ends_the_call(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(1.0, clock=clock), backend)
    await clock.advance(1.0)
    error = Transient("boom")
    backend.fail(2, error)
    with pytest.raises(Transient) as caught:
        await task
    assert caught.value is error
    assert not getattr(error, "__notes__", None)
    assert backend.cancelled == [1]
    assert no_other_tasks()


async def test_a_handled_failure_starts_the_next_attempt_at_once(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(1.0, clock=clock, on=Transient), backend)
    backend.fail(1, Transient("down"))
    await settle()
    assert len(backend.calls) == 2  # without waiting for the delay
    backend.answer(2, "ok")
    assert await task == "ok"


async def test_a_handled_failure_lets_the_others_keep_running(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(1.0, clock=clock, on=Transient), backend)
    await clock.advance(1.0)
    backend.fail(2, Transient("hedge failed"))
    await settle()
    assert not task.done()
    backend.answer(1, "primary")
    assert await task == "primary"


async def test_when_every_attempt_fails_the_last_error_propagates_with_a_note(
    clock: ManualClock, backend: Backend, events: list[Event]
) -> None:
    task = await start(Hedge(1.0, 2, clock=clock, on=Transient, name="reads"), backend)
    await clock.advance(1.0)
    backend.fail(1, Transient("one"))
    await settle()
    assert len(backend.calls) == 3
    backend.fail(3, Transient("three"))
    await settle()
    last = Transient("two")
    backend.fail(2, last)
    with pytest.raises(Transient) as caught:
        await task
    assert caught.value is last
    assert caught.value.__notes__ == ["stalwart: 'reads' gave up after 3 attempts over 1.000s (no attempts left)"]
    assert [e for e in events if isinstance(e, RetryGaveUp)] == [RetryGaveUp("reads", 3, 1.0, "max_attempts", last)]


async def test_a_rejected_hedge_does_not_end_the_call(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(1.0, 2, clock=clock), backend)
    await clock.advance(1.0)
    backend.fail(2, CircuitOpenError("dep", 1.0))
    await clock.advance(10.0)
    assert len(backend.calls) == 2  # nothing more starts after a rejection
    backend.answer(1, "primary")
    assert await task == "primary"


async def test_a_rejected_primary_alone_is_raised(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(1.0, clock=clock, on=Exception), backend)
    error = CircuitOpenError("dep", 1.0)
    backend.fail(1, error)
    with pytest.raises(CircuitOpenError) as caught:
        await task
    assert caught.value is error
    assert len(backend.calls) == 1


async def test_rejected_results_start_the_next_attempt_and_are_discarded(clock: ManualClock, backend: Backend) -> None:
    discarded: list[Any] = []
    hedge = Hedge(1.0, 2, clock=clock, on_result=lambda r: r == "busy", on_discard=discarded.append)
    task = await start(hedge, backend)
    backend.answer(1, "busy")
    await settle()
    assert len(backend.calls) == 2
    backend.answer(2, "busy")
    await settle()
    backend.answer(3, "fine")
    assert await task == "fine"
    assert discarded == ["busy", "busy"]


async def test_when_every_result_is_rejected_the_last_is_returned(clock: ManualClock, backend: Backend) -> None:
    discarded: list[Any] = []
    hedge = Hedge(1.0, clock=clock, on_result=lambda r: r.startswith("busy"), on_discard=discarded.append)
    task = await start(hedge, backend)
    backend.answer(1, "busy-1")
    await settle()
    backend.answer(2, "busy-2")
    assert await task == "busy-2"
    assert discarded == ["busy-1"]


async def test_an_async_on_discard_is_awaited_and_a_failing_one_is_logged(
    clock: ManualClock, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[Any] = []

    class Response:
        def __init__(self, name: str) -> None:
            self.name = name

        async def aclose(self) -> None:
            await asyncio.sleep(0)
            closed.append(self.name)
            if self.name == "bad":
                raise RuntimeError("close failed")

    task = await start(Hedge(0, 2, clock=clock, on_discard=Response.aclose), backend)
    backend.answer(1, Response("winner"))
    backend.answer(2, Response("loser"))
    backend.answer(3, Response("bad"))
    with caplog.at_level(logging.ERROR, logger="stalwart"):
        assert (await task).name == "winner"
    assert closed == ["loser", "bad"]
    assert "on_discard failed" in caplog.text


# ------------------------------------------------------------------ cancellation: no leaked task


async def test_cancelling_the_caller_cancels_every_attempt(clock: ManualClock, backend: Backend) -> None:
    task = await start(Hedge(1.0, 2, clock=clock), backend)
    await clock.advance(1.0)
    await clock.advance(1.0)
    assert len(backend.calls) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(backend.cancelled) == [1, 2, 3]
    assert no_other_tasks()


async def test_a_cancelled_caller_discards_late_answers(clock: ManualClock, backend: Backend) -> None:
    discarded: list[Any] = []
    backend.stubborn.add(2)
    task = await start(Hedge(1.0, clock=clock, on_discard=discarded.append), backend)
    await clock.advance(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert discarded == ["late-2"]
    assert no_other_tasks()


async def test_cancelled_while_settling_the_winner_is_discarded(clock: ManualClock) -> None:
    discarded: list[Any] = []
    release = asyncio.Event()

    async def slow_to_cancel(n: int) -> str:
        try:
            await asyncio.sleep(3600) if n == 1 else await asyncio.sleep(0)
        except asyncio.CancelledError:
            await release.wait()  # takes its time to clean up
            raise
        return f"answer-{n}"

    attempts = iter([1, 2])
    task = await start(Hedge(1.0, clock=clock, on_discard=discarded.append), lambda: slow_to_cancel(next(attempts)))
    await clock.advance(1.0)  # the hedge answers at once; the primary is being cancelled
    assert not task.done()
    task.cancel()  # the caller goes away while the race waits for the primary
    await settle()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert discarded == ["answer-2"]
    assert no_other_tasks()


async def test_an_attempt_that_cancels_itself_is_not_swallowed(clock: ManualClock) -> None:
    async def gives_up() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await Hedge(1.0, clock=clock, on=Exception).run(gives_up)
    assert no_other_tasks()


async def test_a_deadline_around_the_hedge_cancels_every_attempt(backend: Backend) -> None:
    with pytest.raises(TimeoutError):
        async with deadline(0.0):
            await Hedge(0.0).run(backend)
    assert all(call.cancelled() or call.done() for call in backend.calls)
    assert no_other_tasks()


# ------------------------------------------------------------------ budget, deadline, testing mode


class RecordingBudget:
    def __init__(self, allow: bool = True) -> None:
        self.name = "recording"
        self.allow = allow
        self.log: list[tuple[str, bool] | str] = []

    def record_success(self, first: bool) -> None:
        self.log.append(("success", first))

    def record_failure(self, first: bool) -> None:
        self.log.append(("failure", first))

    def try_acquire_retry(self) -> bool:
        self.log.append("acquire")
        return self.allow


async def test_each_hedge_draws_from_the_budget_and_the_call_records_one_first_outcome(
    clock: ManualClock, backend: Backend
) -> None:
    budget = RecordingBudget()
    task = await start(Hedge(1.0, clock=clock, budget=budget), backend)
    await clock.advance(1.0)
    backend.answer(2, "hedge")
    assert await task == "hedge"
    # The primary was cancelled (records nothing); the winner records the call's first outcome.
    assert budget.log == ["acquire", ("success", True)]


async def test_a_fast_call_only_records_its_success(clock: ManualClock, backend: Backend) -> None:
    budget = RecordingBudget()
    task = await start(Hedge(1.0, clock=clock, budget=budget), backend)
    backend.answer(1, "a")
    await task
    assert budget.log == [("success", True)]


async def test_handled_failures_are_recorded_once_each(clock: ManualClock, backend: Backend) -> None:
    budget = RecordingBudget()
    task = await start(Hedge(1.0, clock=clock, budget=budget, on=Transient), backend)
    backend.fail(1, Transient())
    await settle()
    backend.answer(2, "b")
    await task
    assert budget.log == [("failure", True), "acquire", ("success", False)]


async def test_a_refusing_budget_stops_the_hedging(clock: ManualClock, backend: Backend, events: list[Event]) -> None:
    budget = RecordingBudget(allow=False)
    task = await start(Hedge(1.0, 2, clock=clock, budget=budget), backend)
    await clock.advance(10.0)
    assert len(backend.calls) == 1
    assert RetryBudgetExhausted("recording", 1) in events
    backend.answer(1, "slow but fine")
    assert await task == "slow but fine"


async def test_a_spent_budget_ends_a_call_whose_attempts_failed(clock: ManualClock, backend: Backend) -> None:
    budget = RetryBudget(max_tokens=2)
    budget.record_failure(True)  # 1 token left, not above half: no retries, no hedges
    task = await start(Hedge(1.0, clock=clock, budget=budget, on=Transient), backend)
    error = Transient()
    backend.fail(1, error)
    with pytest.raises(Transient):
        await task
    assert len(backend.calls) == 1
    assert not getattr(error, "__notes__", None)  # one attempt: nothing to tell
    assert budget.statistics().refused == 1


@pytest.mark.parametrize(("budget", "low", "high"), [(None, 200, 200), ("ratio", 101, 110)])
async def test_the_ratio_budget_bounds_hedges_to_a_percentage_of_calls(
    clock: ManualClock, budget: str | None, low: int, high: int
) -> None:
    ratio = RetryBudget.ratio(percent=10.0, min_per_second=0, clock=FakeClock()) if budget else None
    hedge = Hedge(0.0, clock=clock, budget=ratio)
    started = 0

    def one_call() -> Any:
        attempts = 0

        async def attempt() -> str:
            nonlocal attempts, started
            attempts += 1
            started += 1
            if attempts == 1:  # the primary is slow: 10 loop turns, while a hedge answers at once
                for _ in range(10):
                    await asyncio.sleep(0)
            return "x"

        return attempt

    for _ in range(100):
        assert await hedge.run(one_call()) == "x"
    assert low <= started <= high  # with the budget: at most 10 % extra load


async def test_no_hedge_starts_at_or_after_the_deadline(clock: ManualClock, backend: Backend) -> None:
    with deadline(1.0, clock=clock):  # the sync form only sets the ambient deadline
        task = await start(Hedge(1.0, clock=clock), backend)
    await clock.advance(1.0)
    assert len(backend.calls) == 1
    backend.answer(1, "a")
    assert await task == "a"


async def test_no_handled_failure_starts_an_attempt_past_the_deadline(clock: ManualClock, backend: Backend) -> None:
    with deadline(0.5, clock=clock):
        task = await start(Hedge(1.0, clock=clock, on=Transient), backend)
    await clock.advance(0.5)
    assert len(backend.calls) == 1  # no timer: a hedge 1 s later would start after the deadline
    backend.fail(1, Transient())
    with pytest.raises(Transient):
        await task
    assert len(backend.calls) == 1


async def test_testing_mode_caps_the_attempts(clock: ManualClock, backend: Backend) -> None:
    with testing(attempts=1):
        task = await start(Hedge(1.0, clock=clock), backend)
        await clock.advance(1.0)
    assert len(backend.calls) == 1
    backend.answer(1, "a")
    assert await task == "a"


# ------------------------------------------------------------------ learned delay


def test_a_percentile_delay_starts_at_initial_then_follows_the_quantile() -> None:
    learned = Hedge.percentile(0.5, initial=1.0, minimum=0.001, window=4, min_samples=2)
    assert isinstance(learned, PercentileDelay)
    hedge = Hedge(learned)
    assert hedge.delay == 1.0
    learned.record(0.2)
    assert hedge.delay == 1.0
    learned.record(0.4)
    assert hedge.delay == 0.2  # nearest rank: the 1st of 2
    for sample in (0.5, 0.6, 0.7):
        learned.record(sample)
    assert learned.samples == 4
    assert hedge.delay == 0.5  # 0.2 has left the window of 4: [0.4, 0.5, 0.6, 0.7]


def test_a_percentile_delay_is_clamped() -> None:
    learned = Hedge.percentile(0.9, minimum=0.05, maximum=0.3, min_samples=1)
    learned.record(0.001)
    assert learned.current == 0.05
    learned.record(10.0)
    assert learned.current == 0.3


async def test_the_primary_latency_is_learned_and_a_hedge_win_records_a_censored_sample(
    clock: ManualClock, backend: Backend
) -> None:
    learned = Hedge.percentile(1.0, initial=0.5, minimum=0.001, min_samples=1)
    hedge = Hedge(learned, clock=clock)
    task = await start(hedge, backend)
    await clock.advance(0.25)
    backend.answer(1, "a")
    await task
    assert learned.samples == 1
    assert learned.current == 0.25  # the primary's latency
    task = await start(hedge, backend)
    await clock.advance(0.25)  # the hedge starts after the learned 0.25 s
    assert len(backend.calls) == 3
    await clock.advance(0.125)
    backend.answer(3, "hedge")
    await task
    assert learned.samples == 2
    assert learned.current == 0.375  # the primary was at least 0.375 s old when it lost


# ------------------------------------------------------------------ composition and the front door


async def test_in_a_pipeline_a_cancelled_loser_frees_its_bulkhead_slot(clock: ManualClock, backend: Backend) -> None:
    bulkhead = Bulkhead("hedge-test", max_concurrent=2, max_queue=0)
    pipeline = Pipeline.standard(retry=Hedge(1.0, 2, clock=clock), bulkhead=bulkhead)
    task = asyncio.ensure_future(pipeline.run(backend))
    await settle()
    await clock.advance(1.0)
    await clock.advance(1.0)  # the third attempt finds the bulkhead full: rejected, the others go on
    assert len(backend.calls) == 2
    assert bulkhead.statistics().active == 2
    backend.answer(2, "b")
    assert await task == "b"
    assert bulkhead.statistics().active == 0
    assert no_other_tasks()


async def test_a_full_bulkhead_rejection_alone_propagates(clock: ManualClock, backend: Backend) -> None:
    bulkhead = Bulkhead("hedge-full", max_concurrent=1, max_queue=0)
    await bulkhead.acquire()
    try:
        with pytest.raises(BulkheadFullError):
            await Pipeline(Hedge(1.0, clock=clock), bulkhead).run(backend)
    finally:
        bulkhead.release()


async def test_as_a_decorator_it_keeps_the_function(clock: ManualClock) -> None:
    @Hedge(1.0, clock=clock)
    async def read(key: str) -> str:
        """Docstring."""
        return key.upper()

    assert await read("k") == "K"
    assert read.__name__ == "read"
    assert read.__doc__ == "Docstring."


def test_a_sync_function_is_refused() -> None:
    def read() -> str:
        return "x"

    with pytest.raises(TypeError, match="async only"):
        Hedge(1.0)(read)
    with pytest.raises(TypeError, match="async only"):
        Hedge(1.0).call(read)


def test_generator_functions_are_refused() -> None:
    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        Hedge(1.0)(agen)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"delay": -1.0}, ValueError, "delay"),
        ({"delay": float("nan")}, ValueError, "delay"),
        ({"delay": "1"}, TypeError, "delay"),
        ({"delay": 0.1, "max_hedged": 0}, ValueError, "max_hedged"),
        ({"delay": 0.1, "max_hedged": 1.5}, TypeError, "max_hedged"),
        ({"delay": 0.1, "on": "x"}, TypeError, "on"),
        ({"delay": 0.1, "on_result": 3}, TypeError, "on_result"),
        ({"delay": 0.1, "on_discard": 3}, TypeError, "on_discard"),
        ({"delay": 0.1, "budget": object()}, TypeError, "budget"),
        ({"delay": 0.1, "name": ""}, TypeError, "name"),
        ({"delay": 0.1, "clock": object()}, TypeError, "clock"),
    ],
)
def test_invalid_configuration_names_the_parameter(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Hedge(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"percentile": 0.0}, "percentile"),
        ({"percentile": 1.5}, "percentile"),
        ({"minimum": 0.0}, "minimum"),
        ({"minimum": 1.0, "maximum": 0.5}, "maximum"),
        ({"window": 0}, "window"),
        ({"window": 5, "min_samples": 6}, "min_samples"),
    ],
)
def test_invalid_percentile_configuration_names_the_parameter(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Hedge.percentile(**kwargs)


def test_defaults_and_repr() -> None:
    hedge = Hedge(0.25)
    assert (hedge.delay, hedge.max_hedged, hedge.name, hedge.budget) == (0.25, 1, "hedge", None)
    assert repr(hedge) == "Hedge(0.25, max_hedged=1, name='hedge', budget=None)"
    assert repr(Hedge(Hedge.percentile())) == (
        "Hedge(Hedge.percentile(0.95, initial=1.0, minimum=0.01, maximum=30.0, window=100, min_samples=10), "
        "max_hedged=1, name='hedge', budget=None)"
    )


# ------------------------------------------------------------------ a property: any script of events


_STEP = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0])),
    st.tuples(st.sampled_from(["answer", "busy", "handled", "final", "rejected"]), st.integers(1, 4)),
    st.tuples(st.just("cancel"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(max_hedged=st.integers(1, 3), stubborn=st.sets(st.integers(1, 4)), script=st.lists(_STEP, max_size=12))
def test_any_script_ends_cleanly(max_hedged: int, stubborn: set[int], script: list[tuple[str, Any]]) -> None:
    """Whatever happens: at most 1 + max_hedged attempts, every result not returned is discarded exactly once,
    the outcome was produced by an attempt, and no task outlives the call."""

    async def scenario() -> None:
        clock = ManualClock()
        backend = Backend()
        backend.stubborn = stubborn
        discarded: list[Any] = []
        hedge = Hedge(
            1.0,
            max_hedged,
            on=Transient,
            on_result=lambda r: str(r).startswith("busy"),
            on_discard=discarded.append,
            clock=clock,
        )
        task = await start(hedge, backend)
        for op, arg in script:
            if task.done():
                break
            if op == "advance":
                await clock.advance(arg)
            elif op == "cancel":
                task.cancel()
            elif arg <= len(backend.calls) and not backend.calls[arg - 1].done():
                future = backend.calls[arg - 1]
                if op == "answer":
                    future.set_result(f"ok-{arg}")
                elif op == "busy":
                    future.set_result(f"busy-{arg}")
                elif op == "handled":
                    future.set_exception(Transient(f"t-{arg}"))
                elif op == "final":
                    future.set_exception(ValueError(f"v-{arg}"))
                else:
                    future.set_exception(CircuitOpenError("dep", 1.0))
            await settle()
        if not task.done():
            task.cancel()
        outcome: Any = None
        try:
            outcome = await task
        except (asyncio.CancelledError, Transient, ValueError, CircuitOpenError):
            pass
        assert no_other_tasks()
        assert len(backend.calls) <= 1 + max_hedged
        produced = backend.returned
        kept = [outcome] if outcome is not None else []
        assert sorted(discarded + kept) == sorted(produced)

    asyncio.run(scenario())
