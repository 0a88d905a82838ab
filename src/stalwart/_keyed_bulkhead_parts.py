"""The small parts of ``KeyedBulkhead``: its error, its statistics snapshot, and the ``hold(key)`` context manager."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._exceptions import BulkheadFullError

if TYPE_CHECKING:
    from ._keyed_bulkhead import KeyedBulkhead

__all__ = ["CompartmentFullError", "KeyedBulkheadStatistics"]


class CompartmentFullError(BulkheadFullError):
    """A :class:`KeyedBulkhead` refused a call: its key's compartment already runs ``max_per_key`` calls.

    A :class:`~stalwart.BulkheadFullError` (so a :class:`~stalwart.Rejected`): breakers do not count it and retries
    do not retry it by default. The key is an attribute, never part of the message (it may identify a user).

    Attributes:
        name: the keyed bulkhead's name.
        max_concurrent: the per-key limit (``max_per_key``).
        queued: always ``0`` (compartments do not queue).
        key: the key that was refused.
    """

    def __init__(self, name: str, max_per_key: int, key: Hashable) -> None:
        super().__init__(name, max_per_key, 0)
        self.args = (f"bulkhead {name!r}: this key already runs {max_per_key} calls (its compartment is full)",)
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        # The instance dict carries `key` and the PEP 678 notes, as the other stalwart exceptions' state does.
        return (type(self), (self.name, self.max_concurrent, self.key), self.__dict__)


@dataclass(frozen=True, slots=True)
class KeyedBulkheadStatistics:
    """A snapshot of a keyed bulkhead.

    Attributes:
        name: its name.
        max_per_key: the limit per key.
        max_concurrent: the shared limit.
        max_queue: the most callers that may wait for a shared slot.
        active: calls holding a shared slot.
        queued: callers waiting for a shared slot.
        available: free shared slots.
        keys: compartments held in memory (busy ones and at most ``max_idle_keys`` idle ones).
    """

    name: str
    max_per_key: int
    max_concurrent: int
    max_queue: int
    active: int
    queued: int
    available: int
    keys: int


class _Hold:
    """``async with keyed.hold(key):`` / ``with keyed.hold(key):``."""

    __slots__ = ("_bulkhead", "_key")

    def __init__(self, bulkhead: KeyedBulkhead, key: Hashable) -> None:
        self._bulkhead = bulkhead
        self._key = key

    async def __aenter__(self) -> None:
        await self._bulkhead.acquire(self._key)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bulkhead.release(self._key)

    def __enter__(self) -> None:
        self._bulkhead.acquire_sync(self._key)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bulkhead.release(self._key)
