"""``Bulkhead``: a concurrency limit with a bounded FIFO queue, shared by sync and async callers.

The seed's bulkhead (15.5): at most ``max_concurrent`` calls in flight, at most ``max_queue`` callers waiting, each
for at most ``queue_timeout`` seconds; a full bulkhead raises :class:`~stalwart.BulkheadFullError`. Unlike the
seed's, a waiter or caller that is cancelled never leaks a slot or a queue place.

Design. Free slots are tokens in a list: taking one is ``list.pop()`` and returning one is ``list.append()``, both
atomic in CPython, so the uncontended path takes no lock at all, for threads and tasks alike. Waiting is the slow
path and is serialised by one ``threading.Lock``: a waiter enqueues itself, then re-checks for a free token; a
releaser appends its token, then checks for waiters. Whichever comes second sees the other (no lost wake-up), and
the lock holder hands tokens to waiters strictly in arrival order. A slot is *handed over* to a waiter (it never
returns to the pool while someone waits), so newcomers cannot overtake the queue; only a thread arriving at the
very instant a slot is released can take it before the queue head sees it. An async waiter waits on a future of
its own loop (resolved directly on that loop, or with ``call_soon_threadsafe`` from another thread); a sync waiter
blocks on a lock of its own. A waiter that gives up (cancelled, timed out, interrupted) removes itself under the
lock, or, if a slot was handed to it at that same moment, passes the slot on.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from asyncio import get_running_loop
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import CoroutineType, TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._config import check_int, to_seconds_or_none
from ._deadline import ambient_enforced, current_deadline
from ._events import CallRejected, emit, hooks_installed
from ._exceptions import BulkheadFullError
from ._policy import Policy, check_decoratable, refuse_coroutine, refuse_if_not_awaited

__all__ = ["Bulkhead", "BulkheadStatistics"]

P = ParamSpec("P")
T = TypeVar("T")

MAX_CONCURRENT = 1_000_000
"""The largest ``max_concurrent``: each free slot is a list entry (8 bytes), so the limit must be a real number."""

_WAITING = 0
_GRANTED = 1
_GONE = 2  # gave up (cancelled, timed out, interrupted) or could not be woken


@dataclass(frozen=True, slots=True)
class BulkheadStatistics:
    """A snapshot of a bulkhead.

    Attributes:
        name: the bulkhead's name.
        max_concurrent: the concurrency limit.
        max_queue: the most callers that may wait.
        active: calls holding a slot (``max_concurrent - available``).
        queued: callers waiting for a slot.
        available: free slots.
    """

    name: str
    max_concurrent: int
    max_queue: int
    active: int
    queued: int
    available: int


class _Waiter:
    """One queued caller: an async one has ``future``/``loop``, a sync one a held ``lock``."""

    __slots__ = ("future", "lock", "loop", "state")

    def __init__(
        self,
        future: asyncio.Future[None] | None,
        loop: asyncio.AbstractEventLoop | None,
        lock: threading.Lock | None,
    ) -> None:
        self.future = future
        self.loop = loop
        self.lock = lock
        self.state = _WAITING

    def wake(self) -> bool:
        """Tell the waiter its state changed; False when it cannot be reached (its loop is closed)."""
        if self.lock is not None:
            self.lock.release()
            return True
        assert self.future is not None
        assert self.loop is not None
        if asyncio._get_running_loop() is self.loop:
            _resolve(self.future)
            return True
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # the loop is closed: nobody will ever wait on this future again
            return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead(Policy):
    """Limit concurrent calls to ``max_concurrent``, with up to ``max_queue`` callers waiting in FIFO order.

    Usable as a decorator (sync or async), ``await bulkhead.run(fn, *a)``, ``bulkhead.call(fn, *a)``,
    ``async with bulkhead:`` / ``with bulkhead:``, or through the low-level ``acquire()`` / ``acquire_sync()`` /
    ``release()``. **One instance's limit is shared by all its callers**: async tasks (of any event loop) and
    threads draw on the same slots and the same queue.

    A caller that finds no free slot joins the queue if it has fewer than ``max_queue`` waiters and waits at most
    ``queue_timeout`` seconds, and never past the ambient deadline. If the queue is full, or the wait ends without
    a slot, :class:`~stalwart.BulkheadFullError` is raised (a :class:`~stalwart.Rejected`: breakers do not count it
    and retries do not retry it by default), as resilience4j raises ``BulkheadFullException`` when the maximum wait
    passes. A wait cut short by the ambient deadline also raises ``BulkheadFullError``: the caller's budget ran
    out in *this* queue, which says nothing about the dependency. Exception: in async code, when an enclosing
    ``deadline`` scope or ``Timeout`` of the same task enforces that deadline, its expiry cancels the wait and is
    that scope's :class:`~stalwart.DeadlineExceeded`. An ambient deadline already passed means no waiting at all.

    A sync caller blocks its thread while it waits: do not call :meth:`acquire_sync` (or decorate a sync function)
    on an event loop's thread with a bulkhead that async tasks of that loop also hold.

    A cancelled or interrupted caller never leaks a slot or a queue place, even when a slot is handed to it at the
    moment it is cancelled (it passes the slot on). A :class:`~stalwart.CallRejected` event with reason
    ``"bulkhead_full"`` is emitted (when hooks are installed) for every rejection.

    Args:
        name: the bulkhead's name (errors, events, ``statistics()``, ``/health/bulkheads``).
        max_concurrent: slots, an ``int`` from 1 to 1,000,000 (default 10, the seed's).
        max_queue: the most callers that may wait, an ``int`` >= 0 (default 100); ``0`` means no waiting.
        queue_timeout: the longest wait for a slot, ``float`` seconds or ``timedelta`` (default 30.0); ``0`` means
            no waiting; ``None`` or ``math.inf`` waits without a limit of its own (the ambient deadline applies).

    Raises:
        TypeError: ``name`` is not a ``str``, or a parameter has the wrong type.
        ValueError: ``max_concurrent`` < 1 or > 1,000,000, ``max_queue`` < 0, ``queue_timeout`` negative or NaN.
    """

    __slots__ = ("_lock", "_max_concurrent", "_max_queue", "_name", "_permits", "_queue_timeout", "_waiters")

    def __init__(
        self,
        name: str,
        max_concurrent: int = 10,
        max_queue: int = 100,
        queue_timeout: float | timedelta | None = 30.0,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self._name = name
        self._max_concurrent = check_int(max_concurrent, "max_concurrent", minimum=1, maximum=MAX_CONCURRENT)
        self._max_queue = check_int(max_queue, "max_queue", minimum=0)
        timeout = to_seconds_or_none(queue_timeout, "queue_timeout", allow_inf=True)
        self._queue_timeout = None if timeout is not None and math.isinf(timeout) else timeout
        self._permits: list[bool] = [True] * max_concurrent
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The bulkhead's name."""
        return self._name

    @property
    def max_concurrent(self) -> int:
        """The concurrency limit."""
        return self._max_concurrent

    @property
    def max_queue(self) -> int:
        """The most callers that may wait."""
        return self._max_queue

    @property
    def queue_timeout(self) -> float | None:
        """The longest wait for a slot in seconds, or ``None`` for no limit of its own."""
        return self._queue_timeout

    def __repr__(self) -> str:
        return (
            f"Bulkhead({self._name!r}, max_concurrent={self._max_concurrent}, max_queue={self._max_queue}, "
            f"queue_timeout={self._queue_timeout!r})"
        )

    def statistics(self) -> BulkheadStatistics:
        """A snapshot of the slots and the queue (consistent within one event loop; approximate across threads)."""
        available = len(self._permits)
        return BulkheadStatistics(
            name=self._name,
            max_concurrent=self._max_concurrent,
            max_queue=self._max_queue,
            active=self._max_concurrent - available,
            queued=len(self._waiters),
            available=available,
        )

    # -- the low-level API -------------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if needed; pair with exactly one :meth:`release`.

        Raises:
            BulkheadFullError: the queue is full, or no slot was free within ``queue_timeout`` or before the
                ambient deadline.
            asyncio.CancelledError: the waiting task was cancelled (it holds no slot and no queue place).
        """
        if not self._waiters:
            try:
                self._permits.pop()
            except IndexError:
                pass
            else:
                return
        await self._wait_async()

    def acquire_sync(self) -> None:
        """Take a slot, blocking the thread in the queue if needed; pair with exactly one :meth:`release`.

        Raises:
            BulkheadFullError: the queue is full, or no slot was free within ``queue_timeout`` or before the
                ambient deadline.
        """
        if not self._waiters:
            try:
                self._permits.pop()
            except IndexError:
                pass
            else:
                return
        self._wait_sync()

    def try_acquire(self) -> bool:
        """Take a free slot without waiting (a plain call: no coroutine, no lock); pair a ``True`` with exactly one
        :meth:`release`.

        Returns:
            ``True`` when a slot was taken; ``False`` when none is free or callers are queued (they come first:
            wait with :meth:`acquire` / :meth:`acquire_sync`, which also apply the queue limits). Never raises and
            emits nothing.
        """
        if not self._waiters:
            try:
                self._permits.pop()
            except IndexError:
                return False
            return True
        return False

    def release(self) -> None:
        """Return a slot taken with :meth:`acquire`, :meth:`acquire_sync` or :meth:`try_acquire`; hands it to the
        first waiter, if any.

        Raises:
            RuntimeError: more releases than acquisitions.
        """
        permits = self._permits
        if len(permits) >= self._max_concurrent:
            raise RuntimeError(f"bulkhead {self._name!r} released more often than acquired")
        permits.append(True)
        if self._waiters:  # read after the append: a waiter enqueued concurrently is seen here or sees the slot
            self._wake()

    def _wake(self) -> None:
        """Hand slots to the queued waiters; what :meth:`release` does after its append when ``_waiters`` is not
        empty (drivers that inline ``release``: ``_permits.append(True)``, then this when ``_waiters``)."""
        with self._lock:
            self._grant_locked()

    def _grant_locked(self) -> None:
        """Hand free slots to waiters in FIFO order (caller holds the lock)."""
        waiters = self._waiters
        permits = self._permits
        while waiters:
            try:
                permits.pop()
            except IndexError:
                return
            waiter = waiters.popleft()
            waiter.state = _GRANTED
            if not waiter.wake():
                waiter.state = _GONE
                permits.append(True)

    def _wait_limit(self, *, enforced: bool) -> float | None:
        """The longest this caller may wait: ``queue_timeout``, cut to the ambient deadline unless it is enforced."""
        wait = self._queue_timeout
        if not enforced:
            ambient = current_deadline()
            if ambient is not None:
                left = ambient.remaining()
                if wait is None or left < wait:
                    wait = left
        return wait

    def _rejected(self, queued: int) -> BulkheadFullError:
        if hooks_installed():
            emit(CallRejected(self._name, "bulkhead_full"))
        return BulkheadFullError(self._name, self._max_concurrent, queued)

    def _enqueue(self, waiter: _Waiter, wait: float | None) -> int | None:
        """Queue ``waiter``; ``None`` when queued (or already granted), else the queue length it was refused at."""
        with self._lock:
            waiters = self._waiters
            queued = len(waiters)
            if queued >= self._max_queue or (wait is not None and wait <= 0.0):
                # No room, or no time to wait: a slot freed meanwhile is still taken if nobody waits for it.
                if not waiters:
                    try:
                        self._permits.pop()
                    except IndexError:
                        pass
                    else:
                        waiter.state = _GRANTED
                        return None
                return queued
            waiters.append(waiter)
            self._grant_locked()  # re-check after enqueueing: a slot released meanwhile is handed over here
            return None

    def _abandon(self, waiter: _Waiter) -> None:
        """The waiter gives up: leave the queue, or pass on a slot handed to it at that same moment."""
        with self._lock:
            state = waiter.state
            waiter.state = _GONE
            if state == _WAITING:
                self._waiters.remove(waiter)
                return
        if state == _GRANTED:
            self.release()

    def _time_out(self, waiter: _Waiter) -> None:
        """Timer callback of an async waiter (runs on its loop)."""
        with self._lock:
            if waiter.state != _WAITING:
                return
            self._waiters.remove(waiter)
            waiter.state = _GONE
        assert waiter.future is not None
        _resolve(waiter.future)

    async def _wait_async(self) -> None:
        loop = get_running_loop()
        wait = self._wait_limit(enforced=ambient_enforced())
        waiter = _Waiter(loop.create_future(), loop, None)
        refused = self._enqueue(waiter, wait)
        if refused is not None:
            raise self._rejected(refused)
        if waiter.state == _GRANTED:
            return
        handle = None if wait is None else loop.call_later(wait, self._time_out, waiter)
        try:
            await cast("asyncio.Future[None]", waiter.future)
        except BaseException:
            if handle is not None:
                handle.cancel()
            self._abandon(waiter)
            raise
        if handle is not None:
            handle.cancel()
        if waiter.state != _GRANTED:
            raise self._rejected(len(self._waiters))

    def _wait_sync(self) -> None:
        wait = self._wait_limit(enforced=False)
        lock = threading.Lock()
        lock.acquire()
        waiter = _Waiter(None, None, lock)
        refused = self._enqueue(waiter, wait)
        if refused is not None:
            raise self._rejected(refused)
        if waiter.state == _GRANTED:
            return
        try:
            woken = lock.acquire(timeout=-1 if wait is None else min(wait, threading.TIMEOUT_MAX))
        except BaseException:  # KeyboardInterrupt while blocked
            self._abandon(waiter)
            raise
        if woken:
            return  # only a grant releases the waiter's lock
        with self._lock:
            if waiter.state == _GRANTED:  # handed a slot just as the wait ended: keep it
                return
            self._waiters.remove(waiter)
            waiter.state = _GONE
            queued = len(self._waiters)
        raise self._rejected(queued)

    # -- the policy API ----------------------------------------------------------------------------------------

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` holding a slot; the slot is released however the call ends.

        Raises:
            BulkheadFullError: as :meth:`acquire`.
            TypeError: ``fn`` returned something that is not awaitable (a sync function belongs in :meth:`call`).
        """
        acquired = False
        if not self._waiters:
            try:
                self._permits.pop()
                acquired = True
            except IndexError:
                pass
        if not acquired:
            await self._wait_async()
        awaitable: Any = fn  # until fn returns (a function is not awaitable: told apart below)
        try:
            awaitable = fn(*args, **kwargs)
            result: T = await awaitable
            return result
        except TypeError as exc:
            refuse_if_not_awaited(awaitable, fn, self, exc)
            raise
        finally:
            self.release()

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` holding a slot; the slot is released however the call ends.

        Raises:
            BulkheadFullError: as :meth:`acquire_sync`.
            TypeError: ``fn`` returned a coroutine (an ``async def`` function belongs in :meth:`run`).
        """
        self.acquire_sync()
        try:
            result = fn(*args, **kwargs)
        finally:
            self.release()
        if type(result) is CoroutineType:
            refuse_coroutine(result, self, fn)
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async); same behaviour as :meth:`run` / :meth:`call`.

        Raises:
            TypeError: ``fn`` is a generator or async-generator function.
        """
        if check_decoratable(fn, self):
            permits = self._permits
            waiters = self._waiters
            release = self.release
            wait_async = self._wait_async

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                acquired = False
                if not waiters:
                    try:
                        permits.pop()
                        acquired = True
                    except IndexError:
                        pass
                if not acquired:
                    await wait_async()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    release()

            return async_wrapper

        acquire_sync = self.acquire_sync
        release_sync = self.release
        policy = self

        @functools.wraps(fn)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            acquire_sync()
            try:
                result = fn(*args, **kwargs)
            finally:
                release_sync()
            if type(result) is CoroutineType:
                refuse_coroutine(result, policy, fn)
            return result

        return cast("Callable[P, Any]", sync_wrapper)

    # -- context managers --------------------------------------------------------------------------------------

    async def __aenter__(self) -> Bulkhead:
        await self.acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __enter__(self) -> Bulkhead:
        self.acquire_sync()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
