"""Helpers shared by the stores: the host wall clock and error translation."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["wall_clock"]


def wall_clock() -> float:
    """The host's wall clock as UTC epoch seconds (``float``).

    The memory and SQLite stores keep lease and retention times on the host's wall clock, as spec §2.12 says: the
    SQLite file is shared by every process on the host and outlives reboots, which a monotonic clock does not. Stores
    take a ``clock`` argument so tests can drive time by hand.
    """
    return datetime.now(UTC).timestamp()
