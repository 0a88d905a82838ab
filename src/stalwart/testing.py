"""Testing support (public API): a fake clock for time-dependent code.

``FakeClock`` never sleeps for real: ``sleep``/``asleep`` advance its time and record the requested delays, so a
test of a backoff schedule or an open period runs instantly and deterministically.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A manually driven monotonic clock implementing the :class:`stalwart.Clock` protocol.

    Args:
        start: the initial ``monotonic()`` value in seconds (default ``0.0``).

    Attributes:
        sleeps: every delay passed to ``sleep``/``asleep``, in order (seconds).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The current fake time in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``.

        Raises:
            ValueError: ``seconds`` is negative (monotonic time never goes back).
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record ``seconds`` and advance time by it, without blocking."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        """Record ``seconds``, advance time by it and yield to the event loop once."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
