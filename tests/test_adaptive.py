"""AdaptiveTimeout: the estimate (checked against a brute-force model), its reaction to latency steps, and its use
as a per-attempt timeout policy. Durations come from a FakeClock or record(); a real timer of a hundredth of a
second drives the async cancellation (censoring) path only."""

from __future__ import annotations

import asyncio
import math
import threading
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stalwart as sw
from stalwart.testing import FakeClock

FOREVER = 60.0


def model(samples: list[float], *, window: int, min_samples: int, percentile: float, multiplier: float,
          initial: float, minimum: float, maximum: float) -> float:  # fmt: skip
    """The seed's rule, written the slow way: sort the last ``window`` samples on every read."""
    kept = samples[-window:]
    if len(kept) < min_samples:
        return min(maximum, max(minimum, initial))
    ordered = sorted(kept)
    rank = max(0, math.ceil(percentile * len(ordered)) - 1)
    return min(maximum, max(minimum, ordered[rank] * multiplier))


# -- construction -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"initial": 0}, "initial"),
        ({"minimum": 0}, "minimum"),
        ({"maximum": -1}, "maximum"),
        ({"minimum": 5.0, "maximum": 1.0}, "maximum"),
        ({"percentile": 0}, "percentile"),
        ({"percentile": 1.5}, "percentile"),
        ({"percentile": math.nan}, "percentile"),
        ({"multiplier": 0}, "multiplier"),
        ({"multiplier": math.inf}, "multiplier"),
        ({"window": 0}, "window"),
        ({"min_samples": 0}, "min_samples"),
        ({"window": 5, "min_samples": 6}, "min_samples"),
    ],
)
def test_invalid_settings_are_value_errors(kwargs: dict[str, float], parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        sw.AdaptiveTimeout(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [({"percentile": "p99"}, "percentile"), ({"window": 2.5}, "window"), ({"multiplier": True}, "multiplier")],
)
def test_wrong_types_are_type_errors(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(TypeError, match=parameter):
        sw.AdaptiveTimeout(**kwargs)  # type: ignore[arg-type]


def test_seed_defaults() -> None:
    adaptive = sw.AdaptiveTimeout()
    assert adaptive.timeout == 5.0
    assert adaptive.samples == 0
    assert "percentile=0.99" in repr(adaptive)


def test_initial_is_clamped_and_accepts_timedelta() -> None:
    assert sw.AdaptiveTimeout(minimum=0.1, maximum=2.0).timeout == 2.0
    assert sw.AdaptiveTimeout(initial=timedelta(milliseconds=50), minimum=0.1).timeout == 0.1


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_invalid_samples_are_value_errors(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        sw.AdaptiveTimeout().record(bad)


# -- the estimate -----------------------------------------------------------------------------------------------


def test_initial_until_min_samples_then_the_quantile() -> None:
    adaptive = sw.AdaptiveTimeout(maximum=1000.0)
    for _ in range(9):
        adaptive.record(2.0)
    assert adaptive.timeout == 5.0
    adaptive.record(2.0)
    assert adaptive.timeout == 3.0  # 2.0 x 1.5


def test_nearest_rank_p99_of_a_full_window() -> None:
    adaptive = sw.AdaptiveTimeout(maximum=1000.0)
    for value in range(1, 101):
        adaptive.record(float(value))
    assert adaptive.samples == 100
    assert adaptive.timeout == 99.0 * 1.5  # the 99th of 100 sorted samples


def test_clamps() -> None:
    adaptive = sw.AdaptiveTimeout(min_samples=1)
    adaptive.record(0.001)
    assert adaptive.timeout == 1.0
    adaptive.record(100.0)
    assert adaptive.timeout == 30.0


def test_old_samples_leave_the_window() -> None:
    adaptive = sw.AdaptiveTimeout(window=10, min_samples=10, maximum=1000.0)
    for _ in range(10):
        adaptive.record(100.0)
    assert adaptive.timeout == 150.0
    for _ in range(10):
        adaptive.record(4.0)
    assert adaptive.samples == 10
    assert adaptive.timeout == 6.0


settings = st.fixed_dictionaries(
    {
        "window": st.integers(1, 30),
        "percentile": st.floats(0.01, 1.0),
        "multiplier": st.floats(0.5, 3.0),
        "initial": st.floats(0.1, 50.0),
        "minimum": st.floats(0.01, 1.0),
        "maximum": st.floats(1.0, 100.0),
    }
)


@given(settings, st.data(), st.lists(st.floats(0.0, 80.0), max_size=120))
def test_matches_the_sorting_model(config: dict[str, float], data: st.DataObject, samples: list[float]) -> None:
    window = int(config["window"])
    min_samples = data.draw(st.integers(1, window))
    params = {**config, "window": window, "min_samples": min_samples}
    adaptive = sw.AdaptiveTimeout(**params)  # type: ignore[arg-type]
    for i, sample in enumerate(samples):
        adaptive.record(sample)
        if i % 7 == 0 or i == len(samples) - 1:
            assert adaptive.timeout == model(samples[: i + 1], **params)  # type: ignore[arg-type]
    assert adaptive.samples == min(window, len(samples))


def test_follows_a_3x_latency_step_up_and_back_down() -> None:
    """The numbers the docstring states, for the defaults: latency L = 2 s, then 3L = 6 s, then L again.

    Each call is modelled as the policy records it: its latency, or the timeout when the call is cut (censored).
    """
    adaptive = sw.AdaptiveTimeout(maximum=1000.0)

    def call(latency: float) -> bool:
        limit = adaptive.timeout
        adaptive.record(min(latency, limit))
        return latency <= limit  # True: the call finished in time

    for _ in range(100):
        assert call(2.0)
    assert adaptive.timeout == 3.0
    outcomes = [call(6.0) for _ in range(6)]
    assert outcomes == [False, False, False, False, True, True]  # within 4 samples the calls succeed again
    assert adaptive.timeout == 9.0  # within 6 samples: 1.5 x the new latency
    fast_samples = 0
    while adaptive.timeout != 3.0 and fast_samples < 200:
        call(2.0)
        fast_samples += 1
    assert fast_samples == 99  # back down once at most one of the last 100 samples is slow


def test_timeout_is_clamped_by_the_ambient_deadline() -> None:
    clock = FakeClock()
    adaptive = sw.AdaptiveTimeout(clock=clock)
    with sw.deadline(2.0, clock=clock):
        assert adaptive.timeout == 2.0
        clock.advance(1.5)
        assert adaptive.timeout == 0.5
    assert adaptive.timeout == 5.0


def test_concurrent_records_from_threads() -> None:
    adaptive = sw.AdaptiveTimeout(window=50, maximum=1000.0)

    def worker(value: float) -> None:
        for _ in range(500):
            adaptive.record(value)
            _ = adaptive.timeout

    threads = [threading.Thread(target=worker, args=(float(v),)) for v in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert adaptive.samples == 50
    assert 1.5 <= adaptive.timeout <= 12.0


# -- as a policy ------------------------------------------------------------------------------------------------


def exact(clock: FakeClock) -> sw.AdaptiveTimeout:
    """An estimator whose timeout is exactly the largest recorded sample (easy to read back)."""
    return sw.AdaptiveTimeout(initial=1.0, minimum=0.001, percentile=1.0, multiplier=1.0, min_samples=1, clock=clock)


async def test_async_success_is_recorded_at_its_duration() -> None:
    clock = FakeClock()
    adaptive = exact(clock)
    seen: list[sw.Deadline | None] = []

    async def call(duration: float) -> str:
        seen.append(sw.current_deadline())
        clock.advance(duration)
        await asyncio.sleep(0)
        return "ok"

    assert await adaptive.run(call, 0.25) == "ok"
    assert adaptive.samples == 1
    assert adaptive.timeout == 0.25
    assert seen[0] is not None
    assert seen[0].at == 1.0  # the call ran under the timeout of the moment (initial)


async def test_async_timeout_is_recorded_as_a_censored_sample() -> None:
    adaptive = sw.AdaptiveTimeout(initial=0.01, minimum=0.001, percentile=1.0, multiplier=2.0, min_samples=1)
    with pytest.raises(sw.DeadlineExceeded) as info:
        await adaptive.run(asyncio.sleep, FOREVER)
    assert info.value.timeout == 0.01
    assert adaptive.samples == 1
    assert adaptive.timeout == 0.02  # the censored sample (0.01) x 2


async def test_other_failures_and_outer_deadlines_are_not_recorded() -> None:
    adaptive = sw.AdaptiveTimeout(initial=FOREVER, maximum=FOREVER)

    async def boom() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await adaptive.run(boom)

    async def in_scope() -> None:
        async with sw.deadline(0.01):
            await adaptive.run(asyncio.sleep, FOREVER)

    with pytest.raises(sw.DeadlineExceeded) as info:
        await in_scope()
    assert info.value.timeout == 0.01  # the enclosing scope's own error
    assert adaptive.samples == 0


async def test_in_the_standard_pipeline_as_the_attempt_timeout() -> None:
    clock = FakeClock()
    adaptive = exact(clock)
    pipeline = sw.Pipeline.standard(fallback=sw.Fallback(value="fb"), attempt_timeout=adaptive)

    async def call() -> str:
        clock.advance(0.5)
        return "ok"

    assert await pipeline.run(call) == "ok"
    assert adaptive.timeout == 0.5


def test_sync_call_sets_the_ambient_deadline_and_records_late_results() -> None:
    clock = FakeClock()
    adaptive = exact(clock)
    seen: list[sw.Deadline | None] = []

    def slow() -> str:
        seen.append(sw.current_deadline())
        clock.advance(3.0)  # three times the timeout: not pre-empted
        return "late"

    assert adaptive.call(slow) == "late"
    assert seen[0] is not None
    assert seen[0].at == 1.0
    assert adaptive.timeout == 3.0  # recorded at its full duration

    with pytest.raises(ZeroDivisionError):
        adaptive.call(lambda: 1 / 0)
    assert adaptive.samples == 1


def test_sync_decorator() -> None:
    clock = FakeClock()
    adaptive = exact(clock)

    @adaptive
    def work(x: int) -> int:
        clock.advance(0.2)
        return x

    assert work(3) == 3
    assert adaptive.timeout == 0.2
