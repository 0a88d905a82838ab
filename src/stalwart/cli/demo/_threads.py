"""Running coroutines side by side, each in its own thread with its own event loop.

The demo runs each side (an upstream server, a client and its workload) on a :class:`LoopThread`, so the two sides
share nothing but the process: when the plain side's piled-up requests all complete at once, the burst is handled
on the plain side's loop, and the resilient side's timers and sockets keep being served in its own thread.

:func:`run_side_by_side` starts the threads and waits for them from the calling (main) thread without an event
loop, so Ctrl-C arrives there as ``KeyboardInterrupt``; every thread is then cancelled, which runs its coroutine's
``finally`` blocks (servers stopped, clients closed) before the interrupt propagates.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["LoopThread", "run_side_by_side"]

T = TypeVar("T")

_POLL = 0.05
"""Seconds between checks of the threads from the waiting thread."""


class LoopThread(Generic[T]):
    """One coroutine run by ``asyncio.run`` on a daemon thread; cancellable from any thread.

    Args:
        name: the thread's name.
        factory: builds the coroutine; called on the new thread.
    """

    def __init__(self, name: str, factory: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._factory = factory
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[T] | None = None
        self._cancelled = False
        self._outcome: tuple[bool, Any] | None = None  # (ok, result or exception)
        # Waiting on our own event rather than Thread.join(): a KeyboardInterrupt landing inside Thread.join() can
        # leave the Thread marked as stopped while it still runs (CPython bpo-45274's handling), and later joins
        # would then return at once, before the clean-up we are waiting for.
        self._done = threading.Event()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    @property
    def started(self) -> bool:
        """True once the thread runs (or has run)."""
        return self._thread.ident is not None

    def cancel(self) -> None:
        """Cancel the coroutine (before it starts, or while it runs); its ``finally`` blocks run on its loop.

        Safe before :meth:`start`: the coroutine then never runs.
        """
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the coroutine to end (its loop closed); True when it has."""
        return self._done.wait(timeout)

    @property
    def failed(self) -> bool:
        """True once the coroutine has ended with an exception (cancellation included)."""
        outcome = self._outcome
        return outcome is not None and not outcome[0]

    def result(self) -> T:
        """The coroutine's result.

        Raises:
            RuntimeError: the coroutine has not finished.
            BaseException: whatever the coroutine raised (``CancelledError`` when cancelled).
        """
        if self._outcome is None:
            raise RuntimeError(f"{self._thread.name} has not finished")
        ok, value = self._outcome
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _run(self) -> None:
        try:
            self._outcome = (True, asyncio.run(self._main()))
        except BaseException as exc:  # kept for result(); a thread must not print its own traceback
            self._outcome = (False, exc)
        finally:
            self._done.set()

    async def _main(self) -> T:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            if self._cancelled:
                raise asyncio.CancelledError
            self._loop = asyncio.get_running_loop()
            self._task = task
        return await self._factory()


def run_side_by_side(threads: Sequence[LoopThread[Any]], *, stop_timeout: float = 5.0) -> None:
    """Start ``threads`` and wait for all of them; return when every one has ended.

    If one ends with an exception, the others are cancelled. If the waiting thread is interrupted (Ctrl-C raises
    ``KeyboardInterrupt`` here) every thread is cancelled and given up to ``stop_timeout`` seconds to clean up,
    then the interrupt propagates. Results and errors are read with :meth:`LoopThread.result`.
    """
    try:
        for thread in threads:
            thread.start()
        pending = list(threads)
        cancelled = False
        while pending:
            pending = [thread for thread in pending if not thread.join(_POLL)]
            if not cancelled and any(thread.failed for thread in threads):
                cancelled = True
                for thread in pending:
                    thread.cancel()
    except BaseException:
        for thread in threads:
            thread.cancel()
        for thread in threads:
            if thread.started:
                thread.join(stop_timeout)
        raise
