"""Regression: pickling or copying stalwart's exceptions dropped their PEP 678 notes and any other attribute.

What was wrong: ``CircuitOpenError``, ``BulkheadFullError``, ``RateLimitedError`` and ``DeadlineExceeded`` define
``__reduce__`` (their ``__init__`` takes other arguments than ``args``) but returned only the constructor and its
arguments, no state. ``pickle`` (a ``ProcessPoolExecutor``, Celery, multiprocessing) and ``copy.copy`` therefore lost
``__notes__``, including the note a ``Retry`` adds when it gives up on a per-attempt ``DeadlineExceeded`` ("gave up
after 3 attempts ..."), every attribute set after construction, and the attributes of subclasses; and a subclass of
``DeadlineExceeded`` came back as a plain ``DeadlineExceeded``. Peer report: tenacity issue #182 ("RetryError cannot
be serialized with pickle", which broke tenacity inside Celery tasks, celery issue #5626).
"""

from __future__ import annotations

import copy
import pickle

import pytest

import stalwart as sw
from stalwart.testing import FakeClock

ERRORS = [
    sw.CircuitOpenError("payments", 1.5),
    sw.CircuitOpenError("forced"),
    sw.BulkheadFullError("db", 10, 100),
    sw.RateLimitedError(2.0),
    sw.DeadlineExceeded("deadline of 1.000s exceeded", timeout=1.0),
    sw.DeadlineExceeded(),
    sw.IdempotencyInProgress("busy", retry_after=3.0),
    sw.StoreUnavailable("down"),
]


@pytest.mark.parametrize("error", ERRORS, ids=repr)
@pytest.mark.parametrize("clone", [lambda e: pickle.loads(pickle.dumps(e)), copy.copy, copy.deepcopy])
def test_type_message_attributes_and_notes_survive(error: Exception, clone: object) -> None:
    error.add_note("stalwart: 'retry' gave up after 3 attempts over 3.000s (no attempts left)")
    error.request_id = "r-42"  # type: ignore[attr-defined]
    copied = clone(error)  # type: ignore[operator]
    assert type(copied) is type(error)
    assert str(copied) == str(error)
    assert copied.args == error.args
    assert vars(copied) == vars(error)
    assert copied.__notes__ == error.__notes__


class RegionalOpen(sw.CircuitOpenError):
    def __init__(self, name: str, retry_after: float | None = None, *, region: str = "eu") -> None:
        super().__init__(name, retry_after)
        self.region = region


class AttemptTimedOut(sw.DeadlineExceeded):
    pass


def test_subclasses_keep_their_type_and_attributes() -> None:
    opened = pickle.loads(pickle.dumps(RegionalOpen("api", 2.0, region="us")))
    assert (type(opened), opened.region, opened.retry_after) == (RegionalOpen, "us", 2.0)
    timed_out = pickle.loads(pickle.dumps(AttemptTimedOut("attempt", timeout=0.5)))
    assert (type(timed_out), timed_out.timeout, str(timed_out)) == (AttemptTimedOut, 0.5, "attempt")


async def test_the_note_of_a_retry_that_gave_up_on_timeouts_crosses_a_pickle() -> None:
    async def hangs() -> None:
        raise sw.DeadlineExceeded("deadline of 0.010s exceeded", timeout=0.01)

    retry = sw.Retry(on=TimeoutError, max_attempts=2, clock=FakeClock())
    with pytest.raises(sw.DeadlineExceeded) as info:
        await retry.run(hangs)
    received = pickle.loads(pickle.dumps(info.value))
    assert received.__notes__ == info.value.__notes__
    assert "gave up after 2 attempts" in received.__notes__[0]
    assert received.timeout == 0.01
