"""Stop conditions (stalwart._stop): table and property tests, and their wiring into RetryRules and Retry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stalwart as sw
from stalwart import Backoff, Retry, RetryGaveUp, StopCondition, StopState, add_hook, remove_hook, stop
from stalwart._retry_policy import RetryDecision, RetryRules
from stalwart.testing import FakeClock

ZERO = Backoff.constant(0.0)
ONE = Backoff.constant(1.0)


def check(condition: StopCondition, attempt: int = 1, elapsed: float = 0.0, delay: float = 0.0) -> str | None:
    return condition.check(attempt, elapsed, delay, None)


# ------------------------------------------------------------------ the conditions alone


@pytest.mark.parametrize(
    ("condition", "attempt", "elapsed", "delay", "expected"),
    [
        (stop.after_attempt(3), 2, 0.0, 0.0, None),
        (stop.after_attempt(3), 3, 0.0, 0.0, "max_attempts"),
        (stop.after_attempt(1), 1, 0.0, 0.0, "max_attempts"),
        # after_elapsed: the next attempt would start at or after the limit (as max_elapsed)
        (stop.after_elapsed(10.0), 1, 8.0, 1.9, None),
        (stop.after_elapsed(10.0), 1, 8.0, 2.0, "max_elapsed"),
        (stop.after_elapsed(timedelta(seconds=10)), 1, 10.0, 0.0, "max_elapsed"),
        (stop.when(lambda s: s.delay > 5.0), 1, 0.0, 5.0, None),
        (stop.when(lambda s: s.delay > 5.0), 1, 0.0, 5.5, "stop"),
        # | : the first that applies
        (stop.after_attempt(5) | stop.after_elapsed(10.0), 4, 9.0, 0.5, None),
        (stop.after_attempt(5) | stop.after_elapsed(10.0), 5, 0.0, 0.0, "max_attempts"),
        (stop.after_attempt(5) | stop.after_elapsed(10.0), 2, 9.0, 1.0, "max_elapsed"),
        # & : all must apply; the shared reason, else "stop"
        (stop.after_attempt(5) & stop.after_elapsed(10.0), 5, 0.0, 0.0, None),
        (stop.after_attempt(5) & stop.after_elapsed(10.0), 2, 10.0, 0.0, None),
        (stop.after_attempt(5) & stop.after_elapsed(10.0), 5, 10.0, 0.0, "stop"),
        (stop.after_attempt(5) & stop.after_attempt(3), 5, 0.0, 0.0, "max_attempts"),
        # nesting
        ((stop.after_attempt(9) | (stop.after_attempt(2) & stop.after_elapsed(1.0))), 2, 1.0, 0.0, "stop"),
        ((stop.after_attempt(9) | (stop.after_attempt(2) & stop.after_elapsed(1.0))), 2, 0.5, 0.0, None),
    ],
)
def test_conditions(condition: StopCondition, attempt: int, elapsed: float, delay: float, expected: str | None) -> None:
    assert check(condition, attempt, elapsed, delay) == expected


def test_the_predicate_sees_the_state() -> None:
    seen: list[StopState] = []

    def predicate(state: StopState) -> bool:
        seen.append(state)
        return False

    assert stop.when(predicate).check(2, 1.5, 0.25, 3.0) is None
    assert seen == [StopState(attempt=2, elapsed=1.5, delay=0.25, deadline_remaining=3.0)]


def test_combinations_flatten_and_repr() -> None:
    a, b, c = stop.after_attempt(1), stop.after_attempt(2), stop.after_elapsed(3.0)
    assert repr(a | b | c) == "(stop.after_attempt(1) | stop.after_attempt(2) | stop.after_elapsed(3.0))"
    assert repr(a & (b & c)) == "(stop.after_attempt(1) & stop.after_attempt(2) & stop.after_elapsed(3.0))"
    assert (a | b) == (a | b)  # frozen dataclasses: equal by value


def test_combining_with_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        stop.after_attempt(1) | 3  # type: ignore[operator]
    with pytest.raises(TypeError):
        stop.after_attempt(1) & None  # type: ignore[operator]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: stop.after_attempt(0), ValueError, "attempts"),
        (lambda: stop.after_attempt(2.0), TypeError, "attempts"),
        (lambda: stop.after_elapsed(0), ValueError, "seconds"),
        (lambda: stop.after_elapsed(-1.0), ValueError, "seconds"),
        (lambda: stop.after_elapsed(float("inf")), ValueError, "seconds"),
        (lambda: stop.when(3), TypeError, "predicate"),
        (lambda: RetryRules(stop=3), TypeError, "stop"),  # type: ignore[arg-type]
        (lambda: Retry(on=OSError, stop=lambda s: True), TypeError, "stop"),  # type: ignore[arg-type]
    ],
)
def test_invalid_conditions_name_the_parameter(build: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()


_SIMPLE = st.one_of(
    st.integers(1, 6).map(stop.after_attempt),
    st.floats(0.5, 10.0).map(stop.after_elapsed),
)
_CONDITIONS = st.recursive(
    _SIMPLE,
    lambda children: st.one_of(
        st.tuples(children, children).map(lambda ab: ab[0] | ab[1]),
        st.tuples(children, children).map(lambda ab: ab[0] & ab[1]),
    ),
    max_leaves=6,
)
_STATES = st.tuples(st.integers(1, 8), st.floats(0.0, 12.0), st.floats(0.0, 3.0))


@given(_CONDITIONS, _CONDITIONS, _STATES)
def test_or_stops_exactly_when_either_does_and_and_when_both_do(
    a: StopCondition, b: StopCondition, state: tuple[int, float, float]
) -> None:
    sa, sb = check(a, *state) is not None, check(b, *state) is not None
    assert (check(a | b, *state) is not None) == (sa or sb)
    assert (check(a & b, *state) is not None) == (sa and sb)


@given(_CONDITIONS, st.integers(1, 8), st.floats(0.0, 12.0), st.floats(0.0, 3.0), st.floats(0.0, 3.0))
def test_every_condition_is_monotone_in_attempts_and_time(
    condition: StopCondition, attempt: int, elapsed: float, delay: float, later: float
) -> None:
    # Once a condition says stop, it says stop for any later attempt and any later time.
    if check(condition, attempt, elapsed, delay) is not None:
        assert check(condition, attempt + 1, elapsed + later, delay) is not None


# ------------------------------------------------------------------ wired into the decision


def decide(rules: RetryRules, attempt: int, elapsed: float = 0.0) -> RetryDecision:
    return rules.decide(attempt=attempt, elapsed=elapsed, deadline_remaining=None, previous_delay=0.0, rng=lambda: 0.5)


def test_the_rules_ask_the_condition_after_the_delay_is_known() -> None:
    rules = RetryRules(max_attempts=100, backoff=ONE, stop=stop.after_elapsed(5.0))
    assert decide(rules, 1, elapsed=3.9) == RetryDecision(True, 1.0, "backoff", 1.0)
    assert decide(rules, 1, elapsed=4.0) == RetryDecision(False, 0.0, "max_elapsed", 1.0)


def test_the_front_door_limits_still_apply_with_a_condition() -> None:
    rules = RetryRules(max_attempts=2, backoff=ONE, stop=stop.after_attempt(10))
    assert decide(rules, 2).reason == "max_attempts"
    rules = RetryRules(max_attempts=10, backoff=ONE, max_elapsed=2.0, stop=stop.after_attempt(10))
    assert decide(rules, 1, elapsed=1.0).reason == "max_elapsed"


def test_not_retryable_and_pushback_too_long_come_first() -> None:
    rules = RetryRules(stop=stop.when(lambda s: True), max_retry_after=1.0)
    args: dict[str, Any] = {"attempt": 1, "elapsed": 0.0, "deadline_remaining": None, "previous_delay": 0.0}
    assert rules.decide(**args, rng=lambda: 0.5, retryable=False).reason == "not_retryable"
    assert rules.decide(**args, rng=lambda: 0.5, retry_after=5.0).reason == "retry_after_too_long"
    assert rules.decide(**args, rng=lambda: 0.5).reason == "stop"


# ------------------------------------------------------------------ Retry(stop=...)


class Transient(OSError):
    pass


def failing(counter: list[int]) -> Any:
    def fn() -> None:
        counter.append(1)
        raise Transient("down")

    return fn


def test_a_stop_condition_replaces_the_default_attempt_limit() -> None:
    calls: list[int] = []
    retry = Retry(on=OSError, backoff=ZERO, stop=stop.after_attempt(5) | stop.after_elapsed(10.0), clock=FakeClock())
    with pytest.raises(Transient) as info:
        retry.call(failing(calls))
    assert len(calls) == 5  # not the default 3
    assert info.value.__notes__[-1].endswith("(no attempts left)")


def test_without_a_condition_the_default_is_still_three() -> None:
    calls: list[int] = []
    with pytest.raises(Transient):
        Retry(on=OSError, backoff=ZERO, clock=FakeClock()).call(failing(calls))
    assert len(calls) == 3
    assert Retry(on=OSError).max_attempts == 3


def test_an_explicit_max_attempts_still_applies_with_a_condition() -> None:
    calls: list[int] = []
    retry = Retry(on=OSError, max_attempts=2, backoff=ZERO, stop=stop.after_attempt(5), clock=FakeClock())
    with pytest.raises(Transient):
        retry.call(failing(calls))
    assert len(calls) == 2


def test_after_elapsed_stops_before_sleeping_past_it() -> None:
    clock = FakeClock()
    calls: list[int] = []
    retry = Retry(on=OSError, backoff=ONE, stop=stop.after_elapsed(3.5), clock=clock)
    with pytest.raises(Transient) as info:
        retry.call(failing(calls))
    assert clock.sleeps == [1.0, 1.0, 1.0]  # a 4th sleep would end at 4.0 >= 3.5
    assert len(calls) == 4
    assert "next attempt would start after max_elapsed" in info.value.__notes__[-1]


def test_a_predicate_gives_up_with_reason_stop_and_an_event() -> None:
    events: list[Any] = []
    add_hook(events.append)
    try:
        retry = Retry(on=OSError, backoff=ZERO, stop=stop.when(lambda s: s.attempt == 2), clock=FakeClock())
        with pytest.raises(Transient) as info:
            retry.call(failing([]))
    finally:
        remove_hook(events.append)
    assert info.value.__notes__ == ["stalwart: 'retry' gave up after 2 attempts over 0.000s (a stop condition was met)"]
    assert [e.reason for e in events if isinstance(e, RetryGaveUp)] == ["stop"]


def test_the_success_path_never_evaluates_the_condition() -> None:
    def exploding(state: StopState) -> bool:
        raise AssertionError("evaluated on success")

    retry = Retry(on=OSError, stop=stop.when(exploding))
    assert retry.call(lambda: "ok") == "ok"

    @retry
    def decorated() -> str:
        return "ok"

    assert decorated() == "ok"


async def test_async_and_block_forms_honour_the_condition() -> None:
    retry = Retry(on=OSError, backoff=ZERO, stop=stop.after_attempt(4), clock=FakeClock())
    calls: list[int] = []

    async def fn() -> None:
        calls.append(1)
        await asyncio.sleep(0)
        raise Transient

    with pytest.raises(Transient):
        await retry.run(fn)
    assert len(calls) == 4
    numbers: list[int] = []

    def block() -> None:
        for attempt in retry.attempts():
            with attempt:
                numbers.append(attempt.number)
                raise Transient

    with pytest.raises(Transient):
        block()
    assert numbers == [1, 2, 3, 4]


def test_repr_shows_the_condition_and_the_namespace_is_exported() -> None:
    assert "stop=(stop.after_attempt(5) | stop.after_elapsed(1.0))" in repr(
        Retry(on=OSError, stop=sw.stop.after_attempt(5) | sw.stop.after_elapsed(1.0))
    )
    assert "stop=" not in repr(Retry(on=OSError))
