"""Regression: a block-form ``Attempt`` could be entered twice, or after its loop had moved on, without a word.

What was wrong: ``for attempt in retry.attempts(): with attempt: ...`` hands out one ``Attempt`` per run of the
block. Entering the same attempt a second time (two ``with attempt:`` blocks in one iteration) counted one attempt
twice: a success and a failure of the same attempt reached the retry budget, and the second block's failure was
retried as if it were that attempt's. An attempt kept from an earlier iteration (or from a loop that had ended)
was silently ignored: its retryable exception escaped with no retry, no note and no event, as if ``on`` did not
match. Both are mistakes in the calling code that looked like working retries.

Now entering an attempt that was already entered, or that is not the one its loop handed out last, raises
``RuntimeError`` naming the attempt, before the block runs (a misuse is never retried, whatever ``on`` says).
tenacity's ``AttemptManager`` and stamina's ``retry_context`` attempts are likewise single-use.
"""

from __future__ import annotations

import pytest

from stalwart import Backoff, Jitter, Retry
from stalwart.testing import FakeClock

NO_JITTER = Backoff.exponential(jitter=Jitter.NONE)


def retry() -> Retry:
    return Retry(on=Exception, backoff=NO_JITTER, clock=FakeClock(), name="blk")


def test_an_attempt_entered_twice_is_refused() -> None:
    runs: list[str] = []
    with pytest.raises(RuntimeError, match="attempt 1 of 'blk' was already entered"):  # noqa: PT012
        for attempt in retry().attempts():
            with attempt:
                runs.append("first")
            with attempt:
                runs.append("second")  # never runs
    assert runs == ["first"]


async def test_an_attempt_entered_twice_is_refused_async() -> None:
    with pytest.raises(RuntimeError, match="already entered"):  # noqa: PT012
        async for attempt in retry().attempts():
            async with attempt:
                raise OSError
            async with attempt:
                pass


def test_a_stale_attempt_is_refused() -> None:
    kept = []
    with pytest.raises(RuntimeError, match="attempt 1 of 'blk' is not the current attempt"):  # noqa: PT012
        for attempt in retry().attempts():
            kept.append(attempt)
            with kept[0]:  # the first attempt, kept into the second iteration
                raise OSError(attempt.number)
    assert len(kept) == 2


def test_an_attempt_of_a_finished_loop_is_refused() -> None:
    for attempt in retry().attempts():
        with attempt:
            pass
    with pytest.raises(RuntimeError, match="not the current attempt"), attempt:
        pass


def test_one_with_per_attempt_is_unchanged() -> None:
    numbers = []
    for attempt in retry().attempts():
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise OSError
    assert numbers == [1, 2, 3]
