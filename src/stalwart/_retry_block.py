"""The block form of :class:`~stalwart.Retry`: ``for attempt in retry.attempts(): with attempt: ...``.

:class:`Attempts` is both a sync and an async iterator; each :class:`Attempt` is both a sync and an async context
manager. The attempt's ``__exit__`` classifies what the block raised (suppressing a retryable exception so the loop
can continue); the iterator's ``__next__``/``__anext__`` asks the policy's decision (the same rules, events, budget
and notes as the decorator), sleeps on the policy's clock, and either hands out the next attempt or re-raises the
last exception. Sync and async iteration differ only in the sleep.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn

from ._types import NEVER_HANDLED

if TYPE_CHECKING:
    from ._retry import Retry

__all__ = ["Attempt", "Attempts", "cancellation_requested", "raise_cancelled"]


def cancellation_requested() -> bool:
    """Whether the current asyncio task has a cancellation request outstanding (``Task.cancelling() > 0``).

    An attempt that swallowed the ``CancelledError`` it was sent (a driver that turns it into its own connection
    error, a ``try``/``except`` that returns a fallback) ends with a retryable outcome while the task is being
    cancelled: by ``asyncio.timeout``, ``Task.cancel()`` or a ``TaskGroup``. asyncio delivers a cancellation once,
    so nothing would stop the next attempt; retrying there would outlive the timeout by every remaining attempt and
    its backoff. A nested ``asyncio.timeout`` or stalwart ``Timeout`` that fired inside the attempt has withdrawn its
    request (``uncancel``) by the time its error reaches the retry, so a per-attempt timeout is still retried. False
    outside an asyncio task (another event loop, or none).
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running asyncio loop
        return False
    return task is not None and task.cancelling() > 0


def raise_cancelled(name: str, outcome: BaseException | None) -> NoReturn:
    """Stop a retrying call whose task is being cancelled: raise ``CancelledError`` from the last outcome.

    Raises:
        asyncio.CancelledError: always; ``asyncio.timeout`` turns it into its ``TimeoutError`` as usual.
    """
    raise asyncio.CancelledError(
        f"stalwart: {name!r} did not retry: its task is being cancelled (the attempt swallowed the cancellation)"
    ) from outcome


class Attempt:
    """One attempt of a retrying block; use it as ``with attempt:`` or ``async with attempt:``, once.

    Attributes:
        number: the attempt's number, ``1`` for the first.

    Raises:
        RuntimeError: (on entry) the attempt was already entered, or it is not the attempt its loop handed out last
            (kept from an earlier iteration or a finished loop); the block does not run.
    """

    __slots__ = ("_attempts", "_entered", "number")

    def __init__(self, attempts: Attempts, number: int) -> None:
        self._attempts = attempts
        self._entered = False
        self.number = number

    def __enter__(self) -> Attempt:
        self._enter()
        return self

    def _enter(self) -> None:
        attempts = self._attempts
        if self.number != attempts._number or attempts._done:
            raise RuntimeError(
                f"attempt {self.number} of {attempts._retry._name!r} is not the current attempt: enter the attempt "
                "the loop has just handed out"
            )
        if self._entered:
            raise RuntimeError(
                f"attempt {self.number} of {attempts._retry._name!r} was already entered: use each attempt in one "
                "'with attempt:' block"
            )
        self._entered = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self._attempts._finish(self.number, exc)

    async def __aenter__(self) -> Attempt:
        self._enter()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self._attempts._finish(self.number, exc)

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"


class Attempts:
    """The attempts of one retrying block: iterate with ``for`` (sync sleeps) or ``async for`` (async sleeps)."""

    __slots__ = ("_done", "_failure", "_number", "_previous", "_retry", "_start")

    def __init__(self, retry: Retry) -> None:
        self._retry = retry
        self._number = 0
        self._start = 0.0
        self._previous = 0.0
        self._failure: BaseException | None = None
        self._done = False

    def __iter__(self) -> Attempts:
        return self

    def __aiter__(self) -> Attempts:
        return self

    def _advance(self) -> float | None:
        """The delay before the next attempt, or ``None`` when the loop is over; raises when giving up."""
        if self._done:
            return None
        retry = self._retry
        if self._number == 0:
            self._start = retry._clock.monotonic()
            return 0.0
        failure = self._failure
        if failure is None:  # the block completed (or was not entered): done
            self._done = True
            return None
        self._failure = None
        decision = retry._decide(self._number, self._start, self._previous, failure, None)
        if not decision.retry:
            self._done = True
            retry._give_up(decision.reason, self._number, self._start, failure, None)  # type: ignore[arg-type]
        self._previous = decision.backoff_delay
        return decision.delay

    def __next__(self) -> Attempt:
        delay = self._advance()
        if delay is None:
            raise StopIteration
        if delay > 0.0:
            self._retry._clock.sleep(delay)
        self._number += 1
        return Attempt(self, self._number)

    async def __anext__(self) -> Attempt:
        if self._number > 0 and self._failure is not None and not self._done and cancellation_requested():
            self._done = True
            raise_cancelled(self._retry._name, self._failure)
        delay = self._advance()
        if delay is None:
            raise StopAsyncIteration
        if self._number > 0:
            await self._retry._clock.asleep(delay)
        self._number += 1
        return Attempt(self, self._number)

    def _finish(self, number: int, exc: BaseException | None) -> bool:
        """Classify the outcome of attempt ``number``; return True to suppress a retryable exception."""
        retry = self._retry
        budget = retry._budget
        first = number == 1
        if number != self._number or self._done:
            return False  # a stale attempt object: do not interfere
        if exc is None:
            if budget is not None:
                budget.record_success(first)
            return False
        if isinstance(exc, NEVER_HANDLED):
            self._done = True
            return False
        if not retry._should_retry(exc):
            self._done = True
            if not first:
                retry._report_give_up("not_retryable", number, self._start, exc)
            return False
        if budget is not None:
            budget.record_failure(first)
        self._failure = exc
        return True
