"""The one place that reads the system clock.

Every duration in stalwart is measured on a monotonic clock, never wall-clock time, so that a step of the
system clock (NTP, a manual change) does not change a timeout, a backoff or an open period. Policies take a
`Clock` argument; tests pass :class:`stalwart.testing.FakeClock`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Source of monotonic time and of sleeping.

    Methods:
        monotonic: seconds (``float``) on a clock that never goes backwards; only differences are meaningful.
        sleep: block the calling thread for ``seconds``.
        asleep: suspend the calling task for ``seconds``.
    """

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.sleep` and :func:`asyncio.sleep`.

    ``monotonic()`` is the same clock asyncio's event loop uses for ``loop.time()``.
    """

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def asleep(self, seconds: float) -> None:
        """Suspend the current task for ``seconds`` (``asyncio.sleep``)."""
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()
"""The process-wide default clock."""
