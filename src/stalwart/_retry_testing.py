"""The process-wide retry testing mode behind :func:`stalwart.testing.testing`.

While the mode is on, every :class:`~stalwart.Retry` (decorator, ``run``/``call``, block form) makes at most
``attempts`` attempts and, with ``no_sleep``, waits zero seconds between them (server pushback is ignored too), so
a user's test suite exercises its retry paths instantly. The mode is a module global, not a context variable, so
threads started by the code under test see it as well. It is read only after a failure: the success path does not
look at it.

Uses may overlap without nesting (two async tests decorated with ``testing`` running in one loop, tests run in
threads): each use registers an entry and removes exactly that entry when it ends, and the mode is the one of the
latest entry still active. Saving "the previous mode" on entry and restoring it on exit, as a plain stack does, is
only right for strictly nested uses: when the first of two overlapping uses ends first, restoring its saved
``None`` turns the mode off under the second, and the second then restores the first's mode, which stays on for
the rest of the process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from ._backoff import Backoff
from ._config import check_int
from ._retry_policy import RetryRules

__all__ = ["RetryTestingMode", "current_mode", "enter_mode", "leave_mode"]

_ZERO = Backoff.constant(0.0)


@dataclass(frozen=True, slots=True)
class RetryTestingMode:
    """Overrides applied to every retry while testing mode is on.

    Attributes:
        attempts: cap on attempts per call (including the first), or ``None`` to keep each policy's own.
        no_sleep: wait zero seconds between attempts (computed backoff and server pushback are ignored).
    """

    attempts: int | None = None
    no_sleep: bool = True

    def __post_init__(self) -> None:
        if self.attempts is not None:
            check_int(self.attempts, "attempts", minimum=1)
        if not isinstance(self.no_sleep, bool):
            raise TypeError(f"no_sleep must be a bool, got {self.no_sleep!r}")

    def adjust(self, rules: RetryRules) -> RetryRules:
        """``rules`` with this mode's overrides applied."""
        attempts = rules.max_attempts if self.attempts is None else min(rules.max_attempts, self.attempts)
        if attempts == rules.max_attempts and not self.no_sleep:
            return rules
        return replace(rules, max_attempts=attempts, backoff=_ZERO if self.no_sleep else rules.backoff)


_mode: RetryTestingMode | None = None  # the latest active entry's mode: what the retry drivers read
_active: list[tuple[object, RetryTestingMode]] = []  # (token, mode) of the uses still active, in entry order
_lock = threading.Lock()


def current_mode() -> RetryTestingMode | None:
    """The active testing mode, or ``None``."""
    return _mode


def enter_mode(mode: RetryTestingMode) -> object:
    """Turn ``mode`` on; return the token that :func:`leave_mode` takes to end this use (and only this one)."""
    global _mode
    token = object()
    with _lock:
        _active.append((token, mode))
        _mode = mode
    return token


def leave_mode(token: object) -> None:
    """End the use ``token`` stands for; the mode becomes the latest use still active, or ``None``.

    Raises:
        ValueError: ``token`` is not active (already left, or not from :func:`enter_mode`).
    """
    global _mode
    with _lock:
        for i in range(len(_active) - 1, -1, -1):
            if _active[i][0] is token:
                del _active[i]
                break
        else:
            raise ValueError("this testing mode is not active")
        _mode = _active[-1][1] if _active else None
