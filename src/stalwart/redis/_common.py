"""Pieces shared by the Redis-backed objects of ``stalwart.redis`` (the retry budget, the circuit store).

Both follow one pattern: the hot path never talks to Redis; a background daemon thread with the *synchronous* client
runs one Lua script per object every interval (or at once when woken), and when Redis cannot be reached the object
decides from local state, logs that once, and logs once again when Redis answers. This module holds that pattern's
parts:

* :func:`check_client`, :func:`check_key_part`, :func:`client_from_url`: validation and a client built for a
  background thread (socket timeouts, no client-side retries: the next sync is the retry);
* :data:`REDIS_ERRORS`: what a failed round trip (or a malformed reply) can raise;
* :class:`OutageLog`: the "logged once" rule;
* :class:`SyncThread`: the background loop, which also carries its owner (a :class:`SyncOwner`) across ``fork``.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

__all__ = [
    "MAX_MS",
    "REDIS_ERRORS",
    "OutageLog",
    "SyncOwner",
    "SyncThread",
    "check_client",
    "check_key_part",
    "client_from_url",
]

logger = logging.getLogger("stalwart")

MAX_MS = 2**52
"""The most milliseconds a duration sent to the scripts may count (about 142,700 years): the scripts add it to the
server's time in Lua numbers, which hold whole numbers exactly below 2**53, and Redis reads the sum back."""

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, ValueError, TypeError, IndexError)
"""Errors a sync treats as "Redis cannot be reached": the client's errors, socket errors, and a malformed reply."""


def check_client(client: object) -> None:
    """Refuse anything but a synchronous ``redis.Redis`` or ``redis.RedisCluster``.

    Raises:
        TypeError: ``client`` is an asyncio client or not a Redis client.
    """
    if not isinstance(client, redis.Redis | redis.RedisCluster):
        raise TypeError(f"client must be a synchronous redis.Redis or redis.RedisCluster, got {client!r}")


def check_key_part(value: object, parameter: str) -> str:
    """A non-empty ``str`` without ``{`` or ``}`` (it goes inside a key's hash tag).

    Raises:
        ValueError: naming ``parameter``.
    """
    if not isinstance(value, str) or not value or "{" in value or "}" in value:
        raise ValueError(f"{parameter} must be a non-empty str without '{{' or '}}', got {value!r}")
    return value


def client_from_url(url: str, socket_timeout: float) -> redis.Redis:
    """A synchronous client for ``url`` for a background thread: ``socket_timeout`` seconds to connect and per
    command, and no client-side retries (the next sync is the retry)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
    )


class OutageLog:
    """Log a lost Redis once per outage (WARNING) and its return once (INFO), on the ``stalwart`` logger.

    Args:
        what: the object, for the messages (``"retry budget 'payments'"``).
        fallback: what it does meanwhile (``"using a local budget until it can"``).
        back: what it does again (``"sharing the fleet's budget"``).
    """

    __slots__ = ("_back", "_down", "_fallback", "_lock", "_what")

    def __init__(self, what: str, fallback: str, back: str) -> None:
        self._what = what
        self._fallback = fallback
        self._back = back
        self._down = False
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """In a forked child: a new lock (a thread of the parent may have held the old one at the fork)."""
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """Whether the last report was a failure."""
        return self._down

    def failed(self, exc: BaseException) -> None:
        """A round trip failed: warn if it is the first failure since Redis last answered."""
        with self._lock:
            warn, self._down = not self._down, True
        if warn:
            logger.warning(
                "stalwart: %s cannot reach Redis (%s: %s); %s", self._what, type(exc).__name__, exc, self._fallback
            )

    def answered(self) -> None:
        """A round trip succeeded: say so if Redis had been lost."""
        with self._lock:
            recovered, self._down = self._down, False
        if recovered:
            logger.info("stalwart: %s reaches Redis again; %s", self._what, self._back)


class SyncOwner(Protocol):
    """The object a :class:`SyncThread` syncs (a retry budget, a circuit store)."""

    def sync(self) -> bool:
        """One round: send what is new, read the fleet's state; never raises for a Redis problem."""
        ...

    def _fork_locks(self) -> Iterator[threading.Lock]:
        """The locks a sync holds only for an instant (never across I/O), to be held across ``fork``: each is taken
        before the next is asked for (the locks after the first may depend on what the first guards)."""
        ...

    def _after_fork(self) -> None:
        """In a forked child (only the forking thread runs), with the locks of :meth:`_fork_locks` free: replace the
        locks held across I/O and drop what the parent had not sent yet (the parent sends it, once)."""
        ...


_SYNC_THREADS: weakref.WeakSet[SyncThread] = weakref.WeakSet()
"""Every sync thread of this process not stopped yet (started or not), for ``fork``."""

_HELD_ACROSS_FORK: list[threading.Lock] = []


def _before_fork() -> None:
    """Take every owner's short locks, so that the child gets consistent objects with their locks free."""
    for sync_thread in list(_SYNC_THREADS):
        owner = sync_thread._owner()
        if owner is not None:
            for lock in owner._fork_locks():
                lock.acquire()
                _HELD_ACROSS_FORK.append(lock)


def _after_fork_in_parent() -> None:
    while _HELD_ACROSS_FORK:
        _HELD_ACROSS_FORK.pop().release()


def _after_fork_in_child() -> None:
    while _HELD_ACROSS_FORK:
        _HELD_ACROSS_FORK.pop().release()
    for sync_thread in list(_SYNC_THREADS):
        sync_thread._after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


class SyncThread:
    """The background sync of one owner: a daemon thread calling ``owner.sync()`` every ``interval`` seconds, or at
    once when woken; one last time on stop.

    ``sync`` must not raise (it reports Redis problems itself); an unexpected exception is logged and the loop goes
    on.

    Fork. The thread does not survive ``fork``, and a lock one of the parent's threads held at the fork would stay
    held in the child. So, for every sync thread not stopped (whether its thread runs or not): before the fork the
    owner's short locks (:meth:`SyncOwner._fork_locks`) are taken (the child gets a consistent copy, and they are
    released in both processes); in the child the owner re-initialises itself (:meth:`SyncOwner._after_fork`) and a
    new thread starts if one ran in the parent.

    Garbage collection. The owner is held weakly: an owner nobody refers to any more (never closed) is collected,
    and then the thread ends (without a last round: the owner is gone) and ``close`` is called (the owner's own
    client's ``close``). :meth:`stop` (the owner's ``close()``) stays the explicit way, with a last round.

    Args:
        name: the thread's name.
        interval: seconds between rounds (> 0), or ``None``: no thread (the owner's :meth:`~SyncOwner.sync` is
            called by hand; :meth:`stop` calls it one last time); the fork handling applies all the same.
        owner: the object synced (held weakly).
        close: what to call once ``owner`` has been collected without :meth:`stop` (closing the client it owned),
            or ``None``; it must not refer to ``owner``.
    """

    __slots__ = ("__weakref__", "_finalizer", "_interval", "_name", "_owner", "_stopping", "_thread", "_wake")

    def __init__(
        self, name: str, interval: float | None, owner: SyncOwner, *, close: Callable[[], object] | None = None
    ) -> None:
        self._name = name
        self._interval = interval
        self._owner = weakref.ref(owner)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._finalizer = weakref.finalize(owner, self._owner_collected, close)
        self._finalizer.atexit = False  # at exit the daemon thread just stops, as it always did
        _SYNC_THREADS.add(self)

    def start(self) -> None:
        """Start the thread (idempotent; nothing without an interval or once stopped)."""
        if self._thread is None and self._interval is not None and not self._stopping.is_set():
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run a round as soon as the current one (if any) ends. Never blocks on Redis; safe under any lock."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after one last round (run by the thread, or here when there is none) and wait for it (blocking;
        idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        _SYNC_THREADS.discard(self)
        self._finalizer.detach()
        self._wake.set()
        thread = self._thread
        if thread is None:
            self._safe_step()
        elif thread is not threading.current_thread():
            thread.join()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _owner_collected(self, close: Callable[[], object] | None) -> None:
        """The owner was collected without :meth:`stop`: end the thread (it has nothing left to sync) and ``close``."""
        _SYNC_THREADS.discard(self)
        self._stopping.set()
        self._wake.set()
        if close is not None:
            try:
                close()
            except Exception:  # pragma: no cover - closing a client that is already broken
                logger.exception("stalwart: %s could not close its client", self._name)

    def _after_fork(self) -> None:
        """In a forked child: new events, the owner re-initialised, and a new thread if one ran in the parent."""
        owner = self._owner()
        if owner is None:  # pragma: no cover - collected between the fork and this hook
            return
        self._wake = threading.Event()
        self._stopping = threading.Event()
        owner._after_fork()
        if self._thread is not None:
            self._thread = None
            self.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            if not self._safe_step():
                return  # the owner was collected
            self._wake.wait(self._interval)
            self._wake.clear()
        self._safe_step()  # the last counts

    def _safe_step(self) -> bool:
        """One round; whether the owner is still there. Holds the owner only while it syncs."""
        owner = self._owner()
        if owner is None:
            return False
        try:
            owner.sync()
        except Exception:  # pragma: no cover - a bug in sync(); the thread must not die
            logger.exception("stalwart: %s failed", self._name)
        return True
