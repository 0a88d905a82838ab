"""The per-call state of a hedged call (:class:`~stalwart.Hedge`): its attempts, its timer, its last outcome.

All the decisions run in the caller's task: the timer and the attempts' completions only wake it up. See
:mod:`stalwart._hedge` for the rules.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from ._deadline import current_deadline
from ._events import HedgeStarted, RetryGaveUp, emit, emit_budget_refusal, hooks_installed
from ._exceptions import Rejected
from ._retry_policy import GiveUpReason, add_give_up_note, give_up_note
from ._retry_testing import current_mode
from ._types import NEVER_HANDLED

if TYPE_CHECKING:
    from ._hedge import Hedge

__all__ = ["Race"]

logger = logging.getLogger("stalwart")


class _Nothing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<nothing>"


_NOTHING: Any = _Nothing()  # "no result held" (None is a valid result)


class _Attempt:
    __slots__ = ("number", "race", "started", "task")

    def __init__(self, race: Race, task: asyncio.Future[Any], number: int, started: float) -> None:
        self.race = race
        self.task = task
        self.number = number
        self.started = started
        task.add_done_callback(self._done)

    def _done(self, _: object) -> None:
        """The attempt ended: queue it for judging, in the order attempts end (a loop callback: no decisions)."""
        race = self.race
        race.finished.append(self)
        race._wake()


class Race:
    """One hedged call: ``await Race(hedge, fn, args, kwargs).run()``."""

    __slots__ = (
        "args",
        "attempts",
        "delay",
        "due",
        "finished",
        "fn",
        "hedge",
        "kwargs",
        "last_exc",
        "last_result",
        "launched",
        "limit",
        "loop",
        "recorded",
        "start",
        "stop",
        "timer",
        "timer_tasks",
        "waiter",
    )

    def __init__(self, hedge: Hedge, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> None:
        self.hedge = hedge
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.loop = asyncio.get_running_loop()
        self.attempts: list[_Attempt] = []  # attempts not judged yet, oldest first
        self.finished: list[_Attempt] = []  # attempts ended and not judged yet, in the order they ended
        self.launched = 0
        self.limit = 1 + hedge._max_hedged
        self.recorded = False  # whether an attempt of this call has recorded its outcome in the budget
        self.stop: GiveUpReason | None = None  # why no further attempt may start
        self.last_exc: BaseException | None = None  # the last handled outcome: an exception...
        self.last_result: Any = _NOTHING  # ... or a rejected result
        self.timer: asyncio.TimerHandle | asyncio.Future[Any] | None = None
        self.timer_tasks: list[asyncio.Future[Any]] = []  # timers on an injected clock, awaited at the end
        self.waiter: asyncio.Future[None] | None = None
        self.due = False  # the timer fired: a hedge is due
        self.start = hedge._clock.monotonic()
        self.delay = hedge.delay

    # ------------------------------------------------------------------ wake-ups (loop callbacks: no decisions)
    def _wake(self, _: object = None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fire(self) -> None:
        self.timer = None
        self.due = True
        self._wake()

    def _timer_done(self, timer: asyncio.Future[Any]) -> None:
        if timer.cancelled():
            return
        timer.exception()  # retrieve it, so that asyncio never logs it
        if timer is self.timer:
            self._fire()

    def _arm(self) -> None:
        """Schedule the next hedge ``delay`` seconds from now, unless no more may start."""
        self._disarm()
        if self.launched >= self.limit or self.stop is not None:
            return
        ambient = current_deadline()
        if ambient is not None and ambient.remaining() <= self.delay:
            return  # it would start at or after the deadline
        hedge = self.hedge
        if hedge._loop_timer:
            self.timer = self.loop.call_later(self.delay, self._fire)
        else:
            timer = self.timer = asyncio.ensure_future(hedge._clock.asleep(self.delay), loop=self.loop)
            timer.add_done_callback(self._timer_done)
            self.timer_tasks.append(timer)

    def _disarm(self) -> None:
        self.due = False
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------ starting attempts
    def _launch(self, reason: Literal["delay", "failure"] | None = None) -> None:
        """Start the next attempt; ``reason`` (``None`` for the first) is why a hedge starts."""
        self.launched += 1
        task = asyncio.ensure_future(self.fn(*self.args, **self.kwargs), loop=self.loop)
        now = self.hedge._clock.monotonic()
        self.attempts.append(_Attempt(self, task, self.launched, now))
        if reason is not None and hooks_installed():
            emit(HedgeStarted(self.hedge._name, self.launched, now - self.start, reason))
        self._arm()

    def _may_start(self) -> bool:
        """Whether one more attempt may start now; sets ``stop`` when not."""
        if self.stop is not None:
            return False
        if self.launched >= self.limit:
            self.stop = "max_attempts"
            return False
        mode = current_mode()
        if mode is not None and mode.attempts is not None and self.launched >= mode.attempts:
            self.stop = "max_attempts"
            return False
        ambient = current_deadline()
        if ambient is not None and ambient.expired:
            self.stop = "deadline"
            return False
        budget = self.hedge._budget
        if budget is not None and not budget.try_acquire_retry():
            self.stop = "budget"
            if hooks_installed():
                emit_budget_refusal(budget.name, self.launched)
            return False
        return True

    # ------------------------------------------------------------------ the race
    async def run(self) -> Any:
        """The winning result; or raise the final exception (after every attempt has ended)."""
        try:
            winner = await self._race()
        except BaseException as exc:
            if isinstance(exc, NEVER_HANDLED) and not isinstance(exc, asyncio.CancelledError):
                self._abandon()  # the loop or the coroutine is going away: nothing can be awaited
                raise
            await self._settle(exc)
            raise
        await self._settle(None, winner)
        return winner

    async def _race(self) -> Any:
        self._launch()
        while True:
            if not self.due and not self.finished:
                self.waiter = self.loop.create_future()
                await self.waiter
                self.waiter = None
            # Outcomes first (a rejection stops a hedge that is due), in the order the attempts ended: when none
            # answers, the last to end is the call's outcome, as with Retry.
            finished = self.finished
            while finished:
                attempt = finished.pop(0)
                self.attempts.remove(attempt)
                final, value = await self._judge(attempt)
                if final:
                    return value
            if not self.attempts:  # a handled outcome started nothing new: ``stop`` says why
                return self._give_up()
            if self.due:
                self.due = False
                if self._may_start():
                    self._launch("delay")

    async def _judge(self, attempt: _Attempt) -> tuple[bool, Any]:
        """Classify a finished attempt: ``(True, result)`` for the winner, ``(False, None)`` for a handled outcome.

        The judgement runs user code (the ``on`` and ``on_result`` predicates, the budget) outside any ``except``
        block: an exception it raises propagates with the attempt's exception as its ``__context__``, as ``Retry``'s
        decision does, instead of hiding the dependency's own error.

        Raises:
            BaseException: the attempt's exception when it is the answer (``on`` does not cover it).
        """
        try:
            return await self._judge_unguarded(attempt)
        except BaseException as error:
            task = attempt.task
            exc = task.exception() if task.done() and not task.cancelled() else None
            if exc is not None and error is not exc and error.__context__ is None:
                error.__context__ = exc
            raise

    async def _judge_unguarded(self, attempt: _Attempt) -> tuple[bool, Any]:
        hedge = self.hedge
        task = attempt.task
        if task.cancelled():  # not by us: the attempt cancelled itself; never swallowed
            task.result()  # raises CancelledError
        exc = task.exception()
        budget = hedge._budget
        first = not self.recorded
        if exc is None:
            result = task.result()
            on_result = hedge._on_result
            if on_result is None or not on_result(result):
                if budget is not None:
                    budget.record_success(first)
                if attempt.number == 1 and hedge._learned is not None:
                    hedge._learned.record(hedge._clock.monotonic() - attempt.started)
                return True, result
            if budget is not None:
                budget.record_failure(first)
            self.recorded = True
            self.last_exc = None  # the latest outcome replaces an earlier attempt's exception
            await self._replace_last(result)
        elif hedge._handles(exc):
            if budget is not None:
                budget.record_failure(first)
            self.recorded = True
            self.last_exc = exc
            await self._discard_last()
        elif isinstance(exc, Rejected):  # refused locally: start nothing more, let the others answer
            self.stop = "not_retryable"
            self._disarm()
            self.last_exc = exc
            await self._discard_last()
            return False, None
        else:
            raise exc  # the answer: it ends the call
        if self._may_start():  # a handled outcome: the next attempt starts at once
            self._launch("failure")
        return False, None

    def _give_up(self) -> Any:
        """Every attempt ended without an answer and none may start: the last outcome is the call's."""
        reason = self.stop if self.stop is not None else "max_attempts"
        exc = self.last_exc
        elapsed = self.hedge._clock.monotonic() - self.start
        if hooks_installed():
            emit(RetryGaveUp(self.hedge._name, self.launched, elapsed, reason, exc))
        if exc is None:
            result, self.last_result = self.last_result, _NOTHING
            return result
        if self.launched > 1:
            add_give_up_note(exc, self.hedge, give_up_note(self.hedge._name, self.launched, elapsed, reason))
        raise exc

    # ------------------------------------------------------------------ clean-up
    def _abandon(self) -> None:
        self._disarm()
        for attempt in self.attempts:
            attempt.task.cancel()

    async def _settle(self, exc: BaseException | None, winner: Any = _NOTHING) -> None:
        """Cancel the attempts still running and wait for them all; discard what must be thrown away.

        A cancellation of the caller while waiting is remembered and raised once every attempt has ended (the
        winner is then discarded too).
        """
        self._disarm()
        hedge = self.hedge
        learned = hedge._learned
        now = hedge._clock.monotonic()
        attempts, self.attempts = self.attempts, []
        for attempt in attempts:
            if attempt.number == 1 and learned is not None and exc is None:
                learned.record(now - attempt.started)  # censored: the primary took at least this long
            attempt.task.cancel()
        tasks = [attempt.task for attempt in attempts]
        tasks.extend(self.timer_tasks)
        cancelled: BaseException | None = None
        while True:
            pending = [task for task in tasks if not task.done()]
            if not pending:
                break
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as e:
                cancelled = e
                for task in pending:
                    task.cancel()
        self.finished.clear()
        results = [
            task.result() for task in tasks[: len(attempts)] if not task.cancelled() and task.exception() is None
        ]
        last, self.last_result = self.last_result, _NOTHING
        if last is not _NOTHING:
            results.append(last)
        if cancelled is not None and winner is not _NOTHING:
            results.append(winner)
        # Every result is handed to on_discard even when the caller is cancelled meanwhile (the cancellation cuts
        # the discard in progress and is raised once all have been handed over), the winner too in that case.
        for result in results:
            try:
                await self._discard(result)
            except asyncio.CancelledError as e:
                if cancelled is None and winner is not _NOTHING:
                    results.append(winner)  # the caller will not get it
                cancelled = e
        if cancelled is not None:
            raise cancelled

    async def _replace_last(self, result: Any) -> None:
        """Keep ``result`` as the last handled outcome and discard the one it replaces (stored first, so that a
        cancellation while discarding cannot lose it)."""
        previous, self.last_result = self.last_result, result
        if previous is not _NOTHING:
            await self._discard(previous)

    async def _discard_last(self) -> None:
        await self._replace_last(_NOTHING)

    async def _discard(self, result: Any) -> None:
        on_discard = self.hedge._on_discard
        if on_discard is None:
            return
        try:
            closing = on_discard(result)
            if inspect.isawaitable(closing):
                await closing
        except Exception:
            logger.exception("stalwart: hedge %r: on_discard failed", self.hedge._name)
