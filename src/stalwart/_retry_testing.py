"""The process-wide retry testing mode behind :func:`stalwart.testing.testing`.

While the mode is on, every :class:`~stalwart.Retry` (decorator, ``run``/``call``, block form) makes at most
``attempts`` attempts and, with ``no_sleep``, waits zero seconds between them (server pushback is ignored too), so
a user's test suite exercises its retry paths instantly. The mode is a module global, not a context variable, so
threads started by the code under test see it as well. It is read only after a failure: the success path does not
look at it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._backoff import Backoff
from ._config import check_int
from ._retry_policy import RetryRules

__all__ = ["RetryTestingMode", "current_mode", "set_mode"]

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


_mode: RetryTestingMode | None = None


def current_mode() -> RetryTestingMode | None:
    """The active testing mode, or ``None``."""
    return _mode


def set_mode(mode: RetryTestingMode | None) -> RetryTestingMode | None:
    """Install ``mode`` (``None`` turns testing mode off); return the previous one so a caller can restore it."""
    global _mode
    previous, _mode = _mode, mode
    return previous
