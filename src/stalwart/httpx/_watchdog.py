"""The async transport's per-attempt timeout: one event-loop timer per transport and loop, not one per attempt.

A timer per attempt (``asyncio.timeout`` or a deadline scope) costs a heap push, a cancellation and a few objects on
every request, which is most of the transport's budget on the success path. Attempts under one transport mostly
share one limit, so each new attempt ends *after* the earliest one already watched: watching it is one dict
insertion, and the single loop timer is moved only when an attempt ends earlier than every watched one. When the
timer fires it cancels the tasks whose attempts are due and re-arms itself for the earliest remaining one, so every
attempt is cancelled at its own instant (to the loop's timer resolution).

A task runs at most one attempt of a given transport at a time, so attempts are keyed by their task.

Cancellation follows ``asyncio.timeout``: the watchdog calls ``task.cancel()``; the driver converts the resulting
``CancelledError`` into :class:`~stalwart.DeadlineExceeded` only when the watchdog caused it (``Task.uncancel()``
brings the count back to the level seen when the attempt started); a cancellation from outside propagates.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

__all__ = ["Watchdog"]

_EARLY = 1e-3
"""Seconds of tolerance when the timer fires: the loop runs timers up to its clock resolution early."""


class Watchdog:
    """Cancels the tasks of watched attempts when their time is up; bound to one event loop.

    The driver inlines :meth:`watch` and :meth:`end` on its hot path through the attributes below.

    Attributes:
        loop: the event loop this watchdog's timer runs on.
        due: task → loop time its attempt must end by, for every attempt under watch.
        when: loop time the timer is armed for (``inf``: not armed).
        loop_clock: whether ``time.monotonic()`` readings are loop times (the caller's clock is the system clock
            and the loop keeps asyncio's own ``time()``), so a reading taken anyway can stand in for ``loop.time()``.
    """

    __slots__ = ("_handle", "due", "loop", "loop_clock", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, system_clock: bool = False) -> None:
        self.loop = loop
        self.loop_clock = system_clock and type(loop).time is asyncio.BaseEventLoop.time
        self.due: dict[asyncio.Task[Any], float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self.when = math.inf

    def watch(self, task: asyncio.Task[Any], seconds: float) -> None:
        """Watch the attempt ``task`` is starting, due ``seconds`` from now; end the watch with :meth:`end`."""
        at = self.loop.time() + seconds
        self.due[task] = at
        if at < self.when:
            self.arm(at)

    def end(self, task: asyncio.Task[Any]) -> bool:
        """End the watch of ``task``'s attempt (it finished, however); True when the watchdog cancelled it.

        An ended watch leaves the timer armed: when it fires it simply finds nothing due.
        """
        return self.due.pop(task, None) is None

    def arm(self, when: float) -> None:
        """(Re-)arm the timer for loop time ``when``, earlier than the time it is armed for."""
        if self._handle is not None:
            self._handle.cancel()
        self.when = when
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.when = math.inf
        now = self.loop.time() + _EARLY
        earliest = math.inf
        watched = self.due
        for task, at in list(watched.items()):
            if at <= now:
                del watched[task]
                task.cancel()
            elif at < earliest:
                earliest = at
        if earliest < math.inf:
            self.arm(earliest)
