"""``KeyedBulkhead``: a compartment per key (user, tenant) inside one shared limit — the seed's per-user bulkhead.

A key's compartment admits at most ``max_per_key`` calls at once and has no queue: a key over its limit is refused
at once with :class:`CompartmentFullError`, so one noisy user cannot take the shared slots. Admitted calls then take
a slot of the shared :class:`~stalwart.Bulkhead` (``max_concurrent``, with its FIFO queue and timeout).

Design. A compartment holds its free permits as tokens in a list (``list.pop()`` / ``list.append()`` are atomic in
CPython), as ``Bulkhead`` does, and compartments live in a dict (``dict.get`` / ``dict.setdefault`` are atomic for
keys of builtin types), so admitting and releasing take no lock, for threads and tasks alike.

Memory is bounded by evicting idle compartments (all permits free), never one with a call in flight. A compartment
that becomes idle is listed once in a FIFO of idle compartments; when that list holds more than ``max_idle_keys``,
the oldest are evicted under a lock with a two-step protocol that needs no lock on the fast path: the evictor marks
the compartment ``dead`` *and then* checks that all its permits are free; an admitter takes a permit *and then*
checks ``dead``. Either the evictor sees the permit taken (and revives the compartment), or the admitter sees the
mark (puts the permit back, waits for the evictor to finish and looks the key up again). So at most ``max_per_key``
calls of a key are ever admitted, and a compartment with a call in flight is never dropped. With no call in flight
the memory held is at most ``max_idle_keys`` compartments (``0``: none).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from datetime import timedelta
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._bulkhead import Bulkhead
from ._config import check_int
from ._events import CallRejected, emit, hooks_installed
from ._keyed_bulkhead_parts import CompartmentFullError, KeyedBulkheadStatistics, _Hold
from ._keyed_bulkhead_wrap import wrap_async, wrap_sync
from ._policy import Policy, check_decoratable, refuse_coroutine, refuse_if_not_awaited

__all__ = ["CompartmentFullError", "KeyedBulkhead", "KeyedBulkheadStatistics"]

P = ParamSpec("P")
T = TypeVar("T")


class _Compartment:
    """One key's permits; ``dead`` once evicted; ``listed`` while it has an entry in the idle FIFO."""

    __slots__ = ("dead", "key", "listed", "permits")

    def __init__(self, key: Hashable, limit: int) -> None:
        self.key = key
        self.permits = [True] * limit
        self.dead = False
        self.listed = False


class KeyedBulkhead(Policy):
    """At most ``max_per_key`` calls per key, at most ``max_concurrent`` in all (the seed's per-user bulkhead).

    Use ``await keyed.run_for(key, fn, *args)`` / ``keyed.call_for(key, fn, *args)``, ``async with
    keyed.hold(key):`` / ``with keyed.hold(key):``, the low-level ``acquire(key)`` / ``acquire_sync(key)`` /
    ``release(key)``, or give ``key=`` (a function of the call's arguments) and use it as a decorator or a policy
    (``run`` / ``call``). Sync and async callers share the limits.

    * A key at its limit is refused at once with :class:`CompartmentFullError` (no per-key queue: the caller
      should back off, and the ASGI middleware answers 503 with ``Retry-After``).
    * An admitted call then takes a shared slot like a :class:`~stalwart.Bulkhead` (FIFO queue of ``max_queue``,
      ``queue_timeout``, never waiting past the ambient deadline); a refusal there is a plain
      :class:`~stalwart.BulkheadFullError` and gives the key's permit back.
    * Cancellation-safe: a caller cancelled while waiting or running gives back everything it held.
    * Memory: compartments with calls in flight, plus at most ``max_idle_keys`` idle ones (evicted oldest-idle
      first); a key that comes back after eviction simply gets a fresh compartment.

    Keys should be of builtin hashable types (``str``, ``int``, tuples of them, frozen dataclasses of them): the
    lock-free paths rely on ``dict`` operations being atomic for them. A
    :class:`~stalwart.CallRejected` event (``reason="bulkhead_full"``) is emitted for each refusal.

    Args:
        name: the bulkhead's name (errors, events, statistics; the shared bulkhead has the same name).
        max_per_key: calls per key, ``int >= 1`` (default 10, the seed's per-bulkhead default).
        max_concurrent: calls in all, ``int >= max_per_key`` (default 100).
        max_queue: callers that may wait for a shared slot, ``int >= 0`` (default 100).
        queue_timeout: the longest wait for a shared slot, seconds (default 30.0; ``None``: no limit of its own).
        max_idle_keys: idle compartments kept for reuse, ``int >= 0`` (default 1024).
        key: ``(*args, **kwargs) -> key`` for ``run`` / ``call`` / the decorator (default ``None``: those need
            it; ``run_for`` / ``call_for`` do not).

    Raises:
        TypeError: a parameter has the wrong type.
        ValueError: a limit out of range, or ``max_per_key > max_concurrent``.
    """

    __slots__ = ("_compartments", "_global", "_idle", "_key_of", "_lock", "_max_idle", "_max_per_key", "_name")

    def __init__(
        self,
        name: str,
        *,
        max_per_key: int = 10,
        max_concurrent: int = 100,
        max_queue: int = 100,
        queue_timeout: float | timedelta | None = 30.0,
        max_idle_keys: int = 1024,
        key: Callable[..., Hashable] | None = None,
    ) -> None:
        self._global = Bulkhead(name, max_concurrent, max_queue, queue_timeout)
        self._name = name
        self._max_per_key = check_int(max_per_key, "max_per_key", minimum=1)
        if max_per_key > max_concurrent:
            raise ValueError(f"max_per_key must be <= max_concurrent, got {max_per_key} > {max_concurrent}")
        self._max_idle = check_int(max_idle_keys, "max_idle_keys", minimum=0)
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable of the call's arguments, got {key!r}")
        self._key_of = key
        self._compartments: dict[Hashable, _Compartment] = {}
        self._idle: deque[_Compartment] = deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        shared = self._global
        return (
            f"KeyedBulkhead({self._name!r}, max_per_key={self._max_per_key}, max_concurrent={shared.max_concurrent}, "
            f"max_queue={shared.max_queue}, queue_timeout={shared.queue_timeout!r}, max_idle_keys={self._max_idle})"
        )

    @property
    def name(self) -> str:
        """The bulkhead's name."""
        return self._name

    @property
    def max_per_key(self) -> int:
        """The limit per key."""
        return self._max_per_key

    @property
    def shared(self) -> Bulkhead:
        """The shared :class:`~stalwart.Bulkhead` (the global limit), e.g. for calls that have no key."""
        return self._global

    def statistics(self) -> KeyedBulkheadStatistics:
        """A snapshot (exact within one event loop; approximate while threads race)."""
        shared = self._global.statistics()
        return KeyedBulkheadStatistics(
            name=self._name,
            max_per_key=self._max_per_key,
            max_concurrent=shared.max_concurrent,
            max_queue=shared.max_queue,
            active=shared.active,
            queued=shared.queued,
            available=shared.available,
            keys=len(self._compartments),
        )

    def active_for(self, key: Hashable) -> int:
        """Calls of ``key`` admitted and not yet released."""
        compartment = self._compartments.get(key)
        return 0 if compartment is None else self._max_per_key - len(compartment.permits)

    # -- compartments ---------------------------------------------------------------------------------------------

    def _take(self, key: Hashable) -> _Compartment:
        """Take a permit of ``key``'s compartment, creating it if needed.

        Raises:
            CompartmentFullError: the key runs ``max_per_key`` calls already.
        """
        compartments = self._compartments
        while True:
            compartment = compartments.get(key)
            if compartment is None:
                compartment = compartments.setdefault(key, _Compartment(key, self._max_per_key))
            try:
                compartment.permits.pop()
            except IndexError:
                if not compartment.dead:
                    raise self._full(key) from None
            else:
                if not compartment.dead:
                    return compartment
                compartment.permits.append(True)  # evicted meanwhile: give it back
            with self._lock:  # let the evictor finish, then look the key up again
                pass

    def _give(self, compartment: _Compartment) -> None:
        """Return a permit; list the compartment as idle when that was its last call in flight."""
        permits = compartment.permits
        permits.append(True)
        if len(permits) == self._max_per_key and not compartment.listed:
            self._list_idle(compartment)

    def _list_idle(self, compartment: _Compartment) -> None:
        compartment.listed = True
        idle = self._idle
        idle.append(compartment)
        if len(idle) > self._max_idle:
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest idle compartments until at most ``max_idle_keys`` are listed (see the module)."""
        with self._lock:
            idle = self._idle
            compartments = self._compartments
            limit = self._max_per_key
            while len(idle) > self._max_idle:
                compartment = idle.popleft()
                compartment.listed = False  # before the check: a call ending after it lists the compartment again
                if compartment.dead:
                    continue
                compartment.dead = True  # before the check: an admitter taking a permit after it sees the mark
                if len(compartment.permits) == limit and compartments.get(compartment.key) is compartment:
                    del compartments[compartment.key]
                else:
                    compartment.dead = False  # busy again: keep it

    def _full(self, key: Hashable) -> CompartmentFullError:
        if hooks_installed():
            emit(CallRejected(self._name, "bulkhead_full"))
        return CompartmentFullError(self._name, self._max_per_key, key)

    # -- the low-level API ----------------------------------------------------------------------------------------

    async def acquire(self, key: Hashable) -> None:
        """Take a permit of ``key`` and a shared slot; pair with exactly one :meth:`release` of the same key.

        Raises:
            CompartmentFullError: ``key`` runs ``max_per_key`` calls already.
            BulkheadFullError: no shared slot (queue full, ``queue_timeout``, or the ambient deadline).
        """
        compartment = self._take(key)
        try:
            await self._global.acquire()
        except BaseException:
            self._give(compartment)
            raise

    def acquire_sync(self, key: Hashable) -> None:
        """Take a permit of ``key`` and a shared slot, blocking the thread in the shared queue if needed.

        Raises:
            CompartmentFullError: ``key`` runs ``max_per_key`` calls already.
            BulkheadFullError: no shared slot.
        """
        compartment = self._take(key)
        try:
            self._global.acquire_sync()
        except BaseException:
            self._give(compartment)
            raise

    def release(self, key: Hashable) -> None:
        """Return the shared slot and ``key``'s permit taken by :meth:`acquire` / :meth:`acquire_sync`.

        Raises:
            RuntimeError: ``key`` holds no permit (more releases than acquisitions).
        """
        compartment = self._compartments.get(key)  # never evicted while it has a call in flight
        if compartment is None or len(compartment.permits) >= self._max_per_key:
            raise RuntimeError(f"bulkhead {self._name!r} released for a key that holds no permit")
        self._global.release()
        self._give(compartment)

    def hold(self, key: Hashable) -> _Hold:
        """A context manager holding ``key``'s permit and a shared slot: ``async with`` or ``with``."""
        return _Hold(self, key)

    # -- the policy API -------------------------------------------------------------------------------------------

    async def run_for(self, key: Hashable, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` holding a permit of ``key`` and a shared slot; both released at the end.

        Raises:
            CompartmentFullError, BulkheadFullError: as :meth:`acquire`.
            TypeError: ``fn`` returned something that is not awaitable (a sync function belongs in
                :meth:`call_for`).
        """
        # The fast paths of _take(), Bulkhead.acquire() and _give() written out inline (the hot path).
        compartment = self._compartments.get(key)
        if compartment is None:
            compartment = self._take(key)
        else:
            try:
                compartment.permits.pop()
            except IndexError:
                compartment = self._take(key)  # full, or evicted: the slow path decides
            else:
                if compartment.dead:
                    compartment.permits.append(True)
                    compartment = self._take(key)
        shared = self._global
        try:
            if shared._waiters:
                await shared.acquire()
            else:
                try:
                    shared._permits.pop()
                except IndexError:
                    await shared.acquire()
        except BaseException:
            self._give(compartment)
            raise
        awaitable: Any = fn  # until fn returns (a function is not awaitable: told apart below)
        try:
            awaitable = fn(*args, **kwargs)
            result: T = await awaitable
            return result
        except TypeError as exc:
            refuse_if_not_awaited(awaitable, fn, self, exc)
            raise
        finally:
            shared.release()
            permits = compartment.permits
            permits.append(True)
            if len(permits) == self._max_per_key and not compartment.listed:
                self._list_idle(compartment)

    def call_for(self, key: Hashable, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` holding a permit of ``key`` and a shared slot.

        Raises:
            CompartmentFullError, BulkheadFullError: as :meth:`acquire_sync`.
            TypeError: ``fn`` returned a coroutine (an ``async def`` function belongs in :meth:`run_for`).
        """
        return self._call_sync(key, fn, args, kwargs)

    def _call_sync(self, key: Hashable, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """The body of :meth:`call_for` / :meth:`call` (plain positional arguments: no repacking per call)."""
        # The fast paths of _take(), Bulkhead.acquire_sync() / release() and _give() written out inline (the hot
        # path; the decorator's wrapper in _keyed_bulkhead_wrap.py takes the same steps).
        compartment = self._compartments.get(key)
        if compartment is None:
            compartment = self._take(key)
        else:
            try:
                compartment.permits.pop()
            except IndexError:
                compartment = self._take(key)  # full, or evicted: the slow path decides
            else:
                if compartment.dead:
                    compartment.permits.append(True)
                    compartment = self._take(key)
        shared = self._global
        shared_permits = shared._permits
        if shared._waiters:
            try:
                shared.acquire_sync()
            except BaseException:
                self._give(compartment)
                raise
        else:
            try:
                shared_permits.pop()
            except IndexError:
                try:
                    shared.acquire_sync()
                except BaseException:
                    self._give(compartment)
                    raise
        try:
            result = fn(*args, **kwargs) if kwargs else fn(*args)
        finally:
            # Bulkhead.release() without its over-release check: this call holds the slot it gives back.
            shared_permits.append(True)
            if shared._waiters:  # read after the append, as Bulkhead.release() does
                with shared._lock:
                    shared._grant_locked()
            permits = compartment.permits
            permits.append(True)
            if len(permits) == self._max_per_key and not compartment.listed:
                self._list_idle(compartment)
        if type(result) is CoroutineType:
            refuse_coroutine(result, self, fn)
        return result

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if self._key_of is None:
            raise TypeError("KeyedBulkhead.run/call/decorator need key=...; or use run_for/call_for with a key")
        return self._key_of(*args, **kwargs)

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``run_for(key(*args, **kwargs), fn, *args, **kwargs)``.

        Raises:
            TypeError: no ``key=`` function was given.
        """
        return await self.run_for(self._key(args, kwargs), fn, *args, **kwargs)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``call_for(key(*args, **kwargs), fn, *args, **kwargs)``.

        Raises:
            TypeError: no ``key=`` function was given.
        """
        key_of = self._key_of
        key = self._key(args, kwargs) if key_of is None else key_of(*args, **kwargs)  # _key raises the TypeError
        return self._call_sync(key, fn, args, kwargs)

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async): each call is keyed by ``key(*args, **kwargs)``.

        Raises:
            TypeError: no ``key=`` function was given, or ``fn`` is a generator function.
        """
        if self._key_of is None:
            raise TypeError("decorating with a KeyedBulkhead needs key=... (a function of the call's arguments)")
        key_of = self._key_of
        if check_decoratable(fn, self):
            return cast("Callable[P, Any]", wrap_async(self, fn, key_of))
        return cast("Callable[P, Any]", wrap_sync(self, fn, key_of))
