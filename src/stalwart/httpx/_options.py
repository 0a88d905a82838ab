"""Option objects of :class:`~stalwart.httpx.ResilienceConfig` that are more than a number: the per-origin retry
budget factory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeAlias

from stalwart._budget import RatioRetryBudget, RetryBudget
from stalwart._clock import Clock
from stalwart._config import check_int, check_percent, to_seconds
from stalwart._retry_policy import RetryBudgetHook

__all__ = ["BudgetFactory", "PerOriginBudget"]

BudgetFactory: TypeAlias = Callable[[str, Clock], RetryBudgetHook]
"""``(name, clock) -> budget``: builds the retry budget of one origin (``name`` is the origin's registry name)."""


@dataclass(frozen=True, slots=True)
class PerOriginBudget:
    """The default retry budget of the HTTP transports: one Finagle-style ratio budget per origin.

    Called by the transport once per origin with the origin's name and the transport's clock, it returns
    ``RetryBudget.ratio(percent, ttl, min_per_second, name=name, clock=clock)``: retries to that origin are at most
    ``percent`` % of the calls made to it over the last ``ttl`` seconds, plus a reserve of ``min_per_second``
    retries per second (so a quiet client can still retry). The defaults are Finagle's (its ``RetryBudget``:
    20 %, 10 s, 10 per second).

    Attributes:
        percent: retries allowed per 100 calls, in (0, 100]; default ``20.0``.
        ttl: seconds a call counts (float, or a ``timedelta``; stored as float), ``> 0``; default ``10.0``.
        min_per_second: retries per second always allowed, ``>= 0``; default ``10``.

    Raises:
        TypeError, ValueError: an invalid field (the message names it).
    """

    percent: float = 20.0
    ttl: float | timedelta = 10.0
    min_per_second: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "percent", check_percent(self.percent, "percent"))
        object.__setattr__(self, "ttl", to_seconds(self.ttl, "ttl", allow_zero=False))
        check_int(self.min_per_second, "min_per_second", minimum=0)

    def __call__(self, name: str, clock: Clock) -> RatioRetryBudget:
        """The budget of the origin called ``name``, measured on ``clock``."""
        return RetryBudget.ratio(
            percent=self.percent, ttl=self.ttl, min_per_second=self.min_per_second, name=name, clock=clock
        )
