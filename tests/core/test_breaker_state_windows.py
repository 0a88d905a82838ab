"""The sliding windows (pure): table tests and Hypothesis properties against naive recomputation."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart._windows import (
    FAILED,
    OK,
    SLOW,
    CountAggregator,
    CountWindow,
    InFlight,
    TimeAggregator,
    TimeWindow,
    rate_exceeded,
)

OUTCOMES = st.sampled_from([OK, FAILED, SLOW, FAILED | SLOW])


def totals(outcomes: list[int]) -> tuple[int, int, int]:
    return len(outcomes), sum(1 for o in outcomes if o & FAILED), sum(1 for o in outcomes if o & SLOW)


# --- specifications ------------------------------------------------------------------------------------------------


def test_window_specifications_validate_and_normalise() -> None:
    assert CountWindow(1).size == 1
    assert TimeWindow(60).seconds == 60.0
    assert TimeWindow(2.5).seconds == 3.0  # whole one-second buckets
    assert TimeWindow(timedelta(minutes=1)).seconds == 60.0  # type: ignore[arg-type]
    assert isinstance(CountWindow(5).aggregator(), CountAggregator)
    assert TimeWindow(7).aggregator().seconds == 7
    with pytest.raises(ValueError, match="size"):
        CountWindow(0)
    with pytest.raises(TypeError, match="size"):
        CountWindow(2.0)  # type: ignore[arg-type]
    for bad in (0, 0.5, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="seconds"):
            TimeWindow(bad)
    with pytest.raises(TypeError, match="seconds"):
        TimeWindow("60")  # type: ignore[arg-type]


# --- count window --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "outcomes", "expected"),
    [
        (3, [], (0, 0, 0)),
        (3, [FAILED], (1, 1, 0)),
        (3, [FAILED, OK, SLOW], (3, 1, 1)),
        (3, [FAILED, OK, SLOW, OK], (3, 0, 1)),  # the first failure was evicted
        (3, [FAILED | SLOW, OK, OK, OK], (3, 0, 0)),
        (1, [FAILED, OK], (1, 0, 0)),
        (2, [OK, OK, FAILED, FAILED, FAILED], (2, 2, 0)),
    ],
)
def test_count_window_table(size: int, outcomes: list[int], expected: tuple[int, int, int]) -> None:
    window = CountAggregator(size)
    for outcome in outcomes:
        window.record(0.0, outcome)
    assert (window.calls, window.failures, window.slow) == expected


@given(st.integers(1, 12), st.lists(st.tuples(OUTCOMES, st.booleans()), max_size=60))
def test_count_window_matches_the_last_n_outcomes(size: int, steps: list[tuple[int, bool]]) -> None:
    window = CountAggregator(size)
    seen: list[int] = []
    for outcome, via_fast_path in steps:
        if via_fast_path:
            window.add_success(0.0)
            seen.append(OK)
        else:
            window.record(0.0, outcome)
            seen.append(outcome)
        assert (window.calls, window.failures, window.slow) == totals(seen[-size:])
    window.reset()
    assert (window.calls, window.failures, window.slow) == (0, 0, 0)


@given(
    st.integers(1, 10),
    st.integers(1, 10),
    st.sampled_from([1.0, 25.0, 50.0, 100.0]),
    st.lists(st.sampled_from([OK, FAILED, SLOW]), max_size=40),
)
def test_count_window_success_flags_every_success_that_can_newly_exceed_a_rate(
    size: int, judge_from: int, threshold: float, steps: list[int]
) -> None:
    window = CountAggregator(size)
    window.judge_from = min(judge_from, size)

    def exceeded() -> bool:
        return window.calls >= window.judge_from and (
            rate_exceeded(window.calls, window.failures, threshold)
            or rate_exceeded(window.calls, window.slow, threshold)
        )

    for outcome in steps:
        if outcome == OK:
            before = exceeded()
            flagged = window.add_success(0.0)
            assert flagged or before or not exceeded()
        else:
            window.record(0.0, outcome)


# --- time window ---------------------------------------------------------------------------------------------------


def test_time_window_evicts_whole_seconds() -> None:
    window = TimeAggregator(3)
    window.record(10.2, FAILED)
    window.record(10.9, OK)
    window.record(11.5, SLOW)
    assert (window.calls, window.failures, window.slow) == (3, 1, 1)
    window.advance(12.99)
    assert window.calls == 3
    window.advance(13.0)  # second 10 left the window [11, 13]
    assert (window.calls, window.failures, window.slow) == (1, 0, 1)
    window.advance(1000.0)
    assert (window.calls, window.failures, window.slow) == (0, 0, 0)
    window.record(1000.5, FAILED)
    assert (window.calls, window.failures) == (1, 1)


def test_time_window_reports_evictions() -> None:
    window = TimeAggregator(2)
    assert window.record(5.0, OK) is False
    assert window.add_success(6.0) is False  # nothing left the window
    assert window.advance(6.5) is False
    window.record(6.5, FAILED)
    assert window.add_success(7.0) is True  # second 5 left, and a failure is in the window
    assert window.record(100.0, OK) is True


def test_time_window_late_outcome_goes_to_the_newest_bucket() -> None:
    window = TimeAggregator(2)
    window.record(5.5, OK)
    window.record(4.0, FAILED)  # a thread that read the clock before another recorded
    window.advance(6.0)
    assert (window.calls, window.failures) == (2, 1)
    window.advance(7.0)
    assert window.calls == 0


@given(
    st.integers(1, 6),
    st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 3.0, 10.0]), OUTCOMES, st.booleans()), max_size=60),
)
def test_time_window_matches_naive_recomputation(seconds: int, steps: list[tuple[float, int, bool]]) -> None:
    window = TimeAggregator(seconds)
    now = 100.0
    seen: list[tuple[int, int]] = []
    for dt, outcome, via_fast_path in steps:
        now += dt
        recorded = OK if via_fast_path else outcome
        if via_fast_path:
            window.add_success(now)
        else:
            window.record(now, outcome)
        seen.append((math.floor(now), recorded))
        window.advance(now)
        live = [o for second, o in seen if second > math.floor(now) - seconds]
        assert (window.calls, window.failures, window.slow) == totals(live)


@given(
    st.integers(1, 5),
    st.integers(1, 8),
    st.sampled_from([10.0, 50.0, 100.0]),
    st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.sampled_from([OK, FAILED])), max_size=40),
)
def test_time_window_success_flags_every_success_that_can_newly_exceed_a_rate(
    seconds: int, judge_from: int, threshold: float, steps: list[tuple[float, int]]
) -> None:
    window = TimeAggregator(seconds)
    window.judge_from = judge_from
    now = 0.0

    def exceeded() -> bool:
        return window.calls >= judge_from and rate_exceeded(window.calls, window.failures, threshold)

    for dt, outcome in steps:
        now += dt
        if outcome == OK:
            before = exceeded()
            flagged = window.add_success(now)
            assert flagged or before or not exceeded()
        else:
            window.record(now, outcome)


# --- calls in progress ---------------------------------------------------------------------------------------------


def test_in_flight_calls_become_overdue_once() -> None:
    calls = InFlight(2.0)
    calls.start(-2, 0.0)
    calls.start(-3, 1.0)
    calls.start(-4, 1.5)
    assert calls.promote(1.9) == 0
    assert calls.finish(-3) == 1  # ended in time
    assert calls.promote(2.0) == 1  # -2 has run for 2 s
    assert calls.overdue == 1
    assert calls.promote(3.0) == 0  # -3 ended; -4 has run 1.5 s
    assert calls.promote(3.5) == 1
    assert calls.finish(-2) == 2
    assert calls.finish(-2) == 0  # already ended
    assert calls.overdue == 1
    calls.clear()
    assert calls.finish(-4) == 0
    assert calls.overdue == 0


@given(st.lists(st.tuples(st.sampled_from(["start", "finish", "promote"]), st.integers(0, 5)), max_size=60))
def test_in_flight_matches_naive_bookkeeping(steps: list[tuple[str, int]]) -> None:
    calls = InFlight(1.5)
    starts: dict[int, float] = {}
    overdue: set[int] = set()
    now = 0.0
    ticket = -2
    for action, k in steps:
        now += 0.5
        if action == "start":
            calls.start(ticket, now)
            starts[ticket] = now
            ticket -= 1
        elif action == "finish" and starts:
            target = sorted(starts)[k % len(starts)]
            expected = 0 if target not in starts else (2 if target in overdue else 1)
            assert calls.finish(target) == expected
            del starts[target]
            overdue.discard(target)
        else:
            moved = {t for t, s in starts.items() if now - s >= 1.5} - overdue
            assert calls.promote(now) == len(moved)
            overdue |= moved
            assert calls.overdue == len(overdue)


@pytest.mark.parametrize(
    ("calls", "count", "threshold", "expected"),
    [(0, 0, 50.0, False), (10, 5, 50.0, True), (10, 4, 50.0, False), (3, 1, 33.3, True), (3, 3, 100.0, True)],
)
def test_rate_exceeded_is_at_or_above(calls: int, count: int, threshold: float, expected: bool) -> None:
    assert rate_exceeded(calls, count, threshold) is expected
