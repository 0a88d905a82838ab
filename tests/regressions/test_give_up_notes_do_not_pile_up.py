"""Regression: the give-up note piled up on an exception object that ended many calls.

What was wrong: ``Retry`` added its PEP 678 note to the last exception of every call that gave up. When callers
share one exception *object* — a failed future or task awaited by many callers (single-flight), a cached failed
connection attempt — each call appended another note to the same instance: 50 concurrent callers left 50 notes,
and a long-running service retrying against a cached failure grew the list (and every printed traceback) without
bound. Re-raising one shared instance is a known source of such growth (ipython PR #8017, "don't re-raise the same
Exception in NoDB": its traceback grew with every raise). Now a policy keeps one note per exception (its latest);
notes of other policies, such as nested retries, and the caller's own notes are kept.
"""

from __future__ import annotations

import asyncio
import pickle

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Down(Exception):
    pass


async def test_callers_sharing_one_failed_future_leave_one_note() -> None:
    shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    shared.set_exception(Down("upstream down"))
    retry = sw.Retry(on=Down, max_attempts=2, clock=FakeClock())

    async def fetch() -> None:
        await shared

    outcomes = await asyncio.gather(*[retry.run(fetch) for _ in range(50)], return_exceptions=True)
    error = outcomes[0]
    assert all(outcome is error for outcome in outcomes)
    for _ in range(20):
        with pytest.raises(Down):
            await retry.run(fetch)
    assert isinstance(error, Down)
    assert len(error.__notes__) == 1
    assert "gave up after 2 attempts" in error.__notes__[0]


def test_nested_retries_and_the_callers_own_notes_are_kept() -> None:
    error = Down("shared")
    error.add_note("the caller's own note")
    inner = sw.Retry(on=Down, max_attempts=2, name="inner", clock=FakeClock())
    outer = sw.Retry(on=Down, max_attempts=2, name="outer", clock=FakeClock())

    def fails() -> None:
        raise error

    for _ in range(3):
        with pytest.raises(Down):
            outer.call(inner.call, fails)
    assert error.__notes__[0] == "the caller's own note"
    assert [note.split()[1] for note in error.__notes__[1:]] == ["'inner'", "'outer'"]


def test_the_note_still_pickles() -> None:
    with pytest.raises(Down) as info:
        sw.Retry(on=Down, max_attempts=1, clock=FakeClock()).call(lambda: (_ for _ in ()).throw(Down("x")))
    copied = pickle.loads(pickle.dumps(info.value))
    assert copied.__notes__ == info.value.__notes__
