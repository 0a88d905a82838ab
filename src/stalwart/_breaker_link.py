"""The link between a :class:`~stalwart.CircuitBreaker` with ``store=`` and its store (the driver-side half).

A store (``stalwart.redis.RedisCircuitStore``; anything implementing :class:`CircuitStore`) receives one
:class:`BreakerLink` per breaker in :meth:`CircuitStore.attach`. From its own thread it then calls, per sync,
:meth:`BreakerLink.begin` (under the breaker's lock: what to send), does its I/O without any lock, and calls
:meth:`BreakerLink.end` with the fleet's answer or :meth:`BreakerLink.fail` when there was none. Transitions the
answer causes are logged and emitted from that thread, as the breaker's own are.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ._breaker_settings import BreakerSettings, Transition
from ._breaker_shared import FleetView, SharedMachine, SyncRequest

__all__ = ["BreakerLink", "CircuitStore", "attach", "check_store", "shared_machine"]


class BreakerLink:
    """One breaker as its store sees it.

    Attributes:
        name: the breaker's name.
        settings: its validated settings.
        machine: its :class:`SharedMachine` (touch it only through the methods below).
    """

    __slots__ = ("_lock", "_monotonic", "_publish", "machine", "name", "settings")

    def __init__(
        self,
        name: str,
        machine: SharedMachine,
        lock: threading.Lock,
        publish: Callable[[list[Transition]], None],
        monotonic: Callable[[], float],
    ) -> None:
        self.name = name
        self.settings: BreakerSettings = machine.settings
        self.machine = machine
        self._lock = lock
        self._publish = publish
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"BreakerLink({self.name!r})"

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Install the store's wake-up callback (called under the breaker's lock; it must not block)."""
        with self._lock:
            self.machine.set_wake(wake)

    @property
    def connected(self) -> bool:
        """Whether the breaker's last sync reached the store."""
        return self.machine.connected

    def begin(self) -> SyncRequest:
        """What to send for this breaker now (taken from the machine)."""
        now = self._monotonic()
        with self._lock:
            return self.machine.take(now)

    def end(self, view: FleetView) -> None:
        """Adopt the fleet's answer; publish the transitions it causes."""
        now = self._monotonic()
        with self._lock:
            self.machine.apply(view, now)
            changes = self.machine.take_changes()
        if changes is not None:
            self._publish(changes)

    def disconnect(self) -> None:
        """The store stops syncing this breaker: it goes on as a local breaker."""
        with self._lock:
            self.machine.disconnect()

    def fail(self, request: SyncRequest) -> None:
        """The sync carrying ``request`` got no answer: the breaker decides locally until one does."""
        with self._lock:
            self.machine.fail(request)

    @property
    def lock(self) -> threading.Lock:
        """The breaker's lock (held for an instant, never across I/O): a store holds it across ``fork``, so that a
        child gets a consistent breaker with the lock free."""
        return self._lock

    def forget_unsent(self) -> None:
        """In a forked child: drop what the parent had not sent yet (outcomes, probe outcomes and demand, permits to
        give back, a proposed transition: the parent sends them, once) and the fleet's probe permits it held (the
        parent uses them or gives them back)."""
        now = self._monotonic()
        with self._lock:
            self.machine.take(now)
            self.machine.tokens = 0


@runtime_checkable
class CircuitStore(Protocol):
    """Shared state for circuit breakers (``CircuitBreaker(..., store=...)``).

    Attributes:
        flush_size: outcomes (rate models) or failures (consecutive model) after which a breaker's batch is sent
            without waiting for the next interval.
    """

    flush_size: int

    def attach(self, link: BreakerLink) -> None:
        """Start keeping ``link``'s breaker in step with the fleet (no I/O in the caller's thread).

        Raises:
            ValueError: the breaker's name cannot be used by this store.
        """
        ...


def check_store(store: object) -> CircuitStore:
    """``store``, checked to implement :class:`CircuitStore` (nothing is attached).

    Raises:
        TypeError: ``store`` does not implement :class:`CircuitStore`.
    """
    if not isinstance(store, CircuitStore):
        raise TypeError(f"store must implement the CircuitStore protocol (e.g. RedisCircuitStore), got {store!r}")
    return store


def shared_machine(
    store: object, settings: BreakerSettings, *, now: float, random: Callable[[], float]
) -> SharedMachine:
    """A new breaker's :class:`SharedMachine` for ``store`` (attach it with :func:`attach` once the breaker is built).

    Raises:
        TypeError: ``store`` does not implement :class:`CircuitStore`.
    """
    store = check_store(store)
    return SharedMachine(settings, now=now, random=random, flush_size=store.flush_size)


def attach(
    store: object,
    name: str,
    machine: SharedMachine,
    *,
    lock: threading.Lock,
    publish: Callable[[list[Transition]], None],
    monotonic: Callable[[], float],
) -> None:
    """Attach a breaker to its store; from then on the store's thread may sync it (and publish transitions).

    Raises:
        TypeError: ``store`` does not implement :class:`CircuitStore`.
    """
    if not isinstance(store, CircuitStore):
        raise TypeError(f"store must implement the CircuitStore protocol (e.g. RedisCircuitStore), got {store!r}")
    store.attach(BreakerLink(name, machine, lock, publish, monotonic))
