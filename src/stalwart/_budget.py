"""Retry budgets: bound the retries of every caller of a dependency together, so retries cannot multiply an outage.

Per-call attempt limits do not stop a retry storm: with 3 attempts per call, a dependency that fails every call
receives three times its normal load just when it can least take it, and every layer that retries multiplies that
again. A budget shared by all the callers of a dependency allows retries while most calls succeed and suppresses
them when most fail. Two documented models:

* :class:`RetryBudget` (``RetryBudget(max_tokens=10, token_ratio=0.1)``) is gRPC's retry throttling (gRFC A6,
  "gRPC Retry Design", https://github.com/grpc/proposal/blob/master/A6-client-retries.md): a token count starts at
  ``max_tokens``; each attempt that fails retryably costs 1 token, each success returns ``token_ratio``; retries
  are allowed only while the count is above ``max_tokens / 2``. With the defaults, retries stop once roughly 5
  failures outweigh the successes, and come back after about 10 successes per missing token.
* :meth:`RetryBudget.ratio` (``percent=20.0, ttl=10.0, min_per_second=10``) is Finagle's ``RetryBudget``
  (https://twitter.github.io/finagle/guide/Clients.html#retries): each call deposits into a bucket whose deposits
  expire after ``ttl`` seconds; each retry withdraws ``100 / percent`` deposits; a reserve of
  ``min_per_second * ttl`` retries per window lets a quiet client still retry. Retries are thus at most ``percent``
  % of calls over the last ``ttl`` seconds, plus the reserve.

Both are shared mutable state, guarded by a lock that is never held across an ``await``; the success path of the
token bucket when it is full (the healthy steady state) takes no lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from ._clock import SYSTEM_CLOCK, Clock
from ._config import check_int, check_percent, to_float, to_seconds

__all__ = ["RatioRetryBudget", "RetryBudget", "RetryBudgetStatistics"]

_SLICES = 10  # the ratio budget's window is kept in ttl/10 slices, as Finagle's WindowedAdder does
# The token count is kept on a grid of 10**-9 tokens: float sums of a decimal ratio drift (six failures and five
# successes of 0.2 from 10 tokens give 5.000000000000001, "above" the threshold 5 that exact arithmetic, and gRPC's
# integer thousandths of a token, say it equals). round(x, 9) is correctly rounded, so the count stays the float
# nearest its exact decimal value for ratios of up to 9 decimals (gRPC allows 3).
_TOKEN_DIGITS = 9
_DRAIN_INTERVAL = 0.1  # seconds: a deposit rolls at least this often, so the pending list stays short
_DEPOSIT = 1000  # integer units, as Finagle's TokenRetryBudget: a retry costs _DEPOSIT * 100 / percent


@dataclass(frozen=True, slots=True)
class RetryBudgetStatistics:
    """A snapshot of a retry budget.

    Attributes:
        name: the budget's name.
        kind: ``"token_bucket"`` (gRPC) or ``"ratio"`` (Finagle).
        balance: token bucket: the token count; ratio: how many retries the budget would allow now.
        retries_allowed: whether a retry would be allowed now.
        granted: retries allowed since creation.
        refused: retries refused since creation.
    """

    name: str
    kind: Literal["token_bucket", "ratio"]
    balance: float
    retries_allowed: bool
    granted: int
    refused: int


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    return name


class RetryBudget:
    """gRPC-style retry throttling: a token bucket shared by every caller of a dependency.

    Pass the same instance to every :class:`~stalwart.Retry` (or transport) that calls the dependency. When it
    refuses a retry, the call ends at once with its own last error (or result) and a ``RetryBudgetExhausted``
    event is emitted, so the suppression is visible.

    Args:
        name: the name in events and statistics; default ``"retry-budget"``.
        max_tokens: the bucket's size and starting count, ``> 0`` (gRPC allows up to 1000); default ``10``.
        token_ratio: tokens a success returns, ``> 0`` (gRPC: e.g. ``0.1``); default ``0.1``.

    Raises:
        TypeError, ValueError: an invalid parameter (the message names it).
    """

    __slots__ = (
        "_granted",
        "_lock",
        "_max_tokens",
        "_refill",
        "_refused",
        "_threshold",
        "_token_ratio",
        "_tokens",
        "name",
    )

    def __init__(self, name: str = "retry-budget", *, max_tokens: float = 10.0, token_ratio: float = 0.1) -> None:
        self.name = _check_name(name)
        self._max_tokens = _positive(max_tokens, "max_tokens")
        self._token_ratio = _positive(token_ratio, "token_ratio")
        self._threshold = self._max_tokens / 2.0
        self._tokens = self._max_tokens
        self._refill = False  # whether a success has tokens to return (the bucket is not full); kept with _tokens
        self._lock = threading.Lock()
        self._granted = 0
        self._refused = 0

    @classmethod
    def ratio(
        cls,
        percent: float = 20.0,
        ttl: float | timedelta = 10.0,
        min_per_second: int = 10,
        *,
        name: str = "retry-budget",
        clock: Clock = SYSTEM_CLOCK,
    ) -> RatioRetryBudget:
        """A Finagle-style budget: retries are at most ``percent`` % of calls over ``ttl`` seconds, plus a reserve.

        Args:
            percent: retries allowed per 100 calls, in (0, 100]; default ``20.0``.
            ttl: seconds a call's deposit counts (the window; float or ``timedelta``), ``> 0``; default ``10.0``.
            min_per_second: retries per second always allowed (the reserve, ``min_per_second * ttl`` per window),
                ``>= 0``; default ``10``.
            name: the name in events and statistics.
            clock: the monotonic clock the window is measured on.

        Raises:
            TypeError, ValueError: an invalid parameter (the message names it).
        """
        return RatioRetryBudget(percent=percent, ttl=ttl, min_per_second=min_per_second, name=name, clock=clock)

    @property
    def max_tokens(self) -> float:
        """The bucket's size."""
        return self._max_tokens

    @property
    def token_ratio(self) -> float:
        """Tokens a success returns."""
        return self._token_ratio

    def record_success(self, first: bool) -> None:
        """An attempt's outcome was not retryable (a success): return ``token_ratio`` tokens, up to the maximum."""
        if not self._refill:  # full: the healthy steady state needs no lock
            return
        with self._lock:
            tokens = round(self._tokens + self._token_ratio, _TOKEN_DIGITS)
            if tokens < self._max_tokens:
                self._tokens = tokens
            else:
                self._tokens = self._max_tokens
                self._refill = False

    def record_failure(self, first: bool) -> None:
        """An attempt failed retryably: spend one token (never below zero)."""
        with self._lock:
            tokens = round(self._tokens - 1.0, _TOKEN_DIGITS)
            self._tokens = tokens if tokens > 0.0 else 0.0
            self._refill = True

    def try_acquire_retry(self) -> bool:
        """Whether a retry may be made now: the token count is above half of ``max_tokens``."""
        with self._lock:
            if self._tokens > self._threshold:
                self._granted += 1
                return True
            self._refused += 1
            return False

    def statistics(self) -> RetryBudgetStatistics:
        """A consistent snapshot."""
        with self._lock:
            return RetryBudgetStatistics(
                self.name, "token_bucket", self._tokens, self._tokens > self._threshold, self._granted, self._refused
            )

    def __repr__(self) -> str:
        return f"RetryBudget({self.name!r}, max_tokens={self._max_tokens!r}, token_ratio={self._token_ratio!r})"


class RatioRetryBudget(RetryBudget):
    """Finagle-style retry budget; build it with :meth:`RetryBudget.ratio`, which documents the parameters.

    Deposits are lock-free: a call's first attempt reads the clock and appends to a list of pending deposits
    (``list.append`` is atomic); the first deposit after a slice boundary, or 0.1 s after the last roll, takes the
    lock to credit them to the current slice (and close the slice), so the list stays short. Withdrawals and
    snapshots take the lock and first attribute the pending deposits to the current slice, so no deposit is lost or
    counted twice, whatever the threads do.
    """

    __slots__ = (
        "_balance",
        "_clock",
        "_index",
        "_min_per_second",
        "_monotonic",
        "_pending",
        "_percent",
        "_reserve",
        "_roll_due",
        "_slice_end",
        "_slice_length",
        "_slices",
        "_ttl",
        "_withdrawal",
    )

    def __init__(
        self,
        *,
        percent: float = 20.0,
        ttl: float | timedelta = 10.0,
        min_per_second: int = 10,
        name: str = "retry-budget",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(name)
        self._percent = check_percent(percent, "percent")
        self._ttl = to_seconds(ttl, "ttl", allow_zero=False)
        self._min_per_second = check_int(min_per_second, "min_per_second", minimum=0)
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must implement the Clock protocol, got {clock!r}")
        self._clock = clock
        self._monotonic = clock.monotonic
        withdrawal = _DEPOSIT * 100.0 / self._percent
        if not math.isfinite(withdrawal):  # a subnormal percent: a retry would cost infinitely many calls
            raise ValueError(f"percent is too small to count, got {percent!r}")
        self._withdrawal = math.ceil(withdrawal)
        self._reserve = to_float(self._min_per_second) * self._ttl * self._withdrawal
        if not math.isfinite(self._reserve):
            raise ValueError(
                f"min_per_second x ttl is too large to count at this percent, got {min_per_second!r} x {ttl!r} "
                f"at percent={percent!r}"
            )
        self._slice_length = self._ttl / _SLICES
        self._slices = [0] * _SLICES  # deposits minus withdrawals per slice, in units
        self._index = 0
        self._balance = 0  # sum of the live slices
        now = clock.monotonic()
        self._slice_end = now + self._slice_length
        # The next deposit at or after this instant rolls (takes the lock): the slice's end, or 0.1 s from now.
        self._roll_due = min(self._slice_end, now + _DRAIN_INTERVAL)
        # Deposits not yet attributed to a slice, one entry each: list.append is atomic (the GIL, or the list's own
        # lock without it) and the cheapest call CPython has; _roll takes the first n entries off under the lock.
        self._pending: list[None] = []

    @property
    def percent(self) -> float:
        """Retries allowed per 100 calls."""
        return self._percent

    @property
    def ttl(self) -> float:
        """Seconds a deposit counts."""
        return self._ttl

    def _roll(self, now: float) -> None:
        """Credit pending deposits to the current slice, expire slices older than ``ttl``; lock held."""
        pending = self._pending
        count = len(pending)
        del pending[:count]  # entries appended meanwhile are after these: they wait for the next roll
        fresh = count * _DEPOSIT
        self._slices[self._index] += fresh
        self._balance += fresh
        if now >= self._slice_end:
            self._expire(now)
        due = now + _DRAIN_INTERVAL
        self._roll_due = due if due < self._slice_end else self._slice_end

    def _expire(self, now: float) -> None:
        """Close the slices that ended by ``now``; lock held."""
        passed = int((now - self._slice_end) / self._slice_length) + 1
        slices = self._slices
        if passed >= _SLICES:
            for i in range(_SLICES):
                slices[i] = 0
            self._balance = 0
            self._index = 0
            self._slice_end = now + self._slice_length
            return
        index = self._index
        for _ in range(passed):
            index = (index + 1) % _SLICES
            self._balance -= slices[index]
            slices[index] = 0
        self._index = index
        self._slice_end += passed * self._slice_length

    def _advance(self, now: float) -> None:
        """Roll at ``now`` (a reading of this budget's clock): what a deposit does once ``now >= _roll_due``."""
        with self._lock:
            self._roll(now)

    def record_success(self, first: bool) -> None:
        """A call's first attempt ended: deposit (later attempts deposit nothing, so retries earn no retries)."""
        if first:
            now = self._monotonic()
            if now >= self._roll_due:
                self._advance(now)
            self._pending.append(None)

    record_failure = record_success  # a call is a call whatever its first outcome

    def try_acquire_retry(self) -> bool:
        """Withdraw one retry if the window's deposits plus the reserve cover it."""
        with self._lock:
            self._roll(self._monotonic())
            if self._balance + self._reserve >= self._withdrawal:
                self._slices[self._index] -= self._withdrawal
                self._balance -= self._withdrawal
                self._granted += 1
                return True
            self._refused += 1
            return False

    def statistics(self) -> RetryBudgetStatistics:
        """A consistent snapshot; ``balance`` is the number of retries the budget would allow now."""
        with self._lock:
            self._roll(self._monotonic())
            available = max(0, int((self._balance + self._reserve) // self._withdrawal))
            return RetryBudgetStatistics(self.name, "ratio", available, available > 0, self._granted, self._refused)

    def __repr__(self) -> str:
        return (
            f"RetryBudget.ratio(percent={self._percent!r}, ttl={self._ttl!r}, "
            f"min_per_second={self._min_per_second!r}, name={self.name!r})"
        )


INLINE_NONE, INLINE_TOKEN_BUCKET, INLINE_RATIO = 0, 1, 2


def inline_kind(budget: object, monotonic: Callable[[], float]) -> int:
    """How a driver whose clock reads ``monotonic`` may record a first attempt's success without a method call.

    The success path of a retry driver is a few dozen nanoseconds, so a method call per success would be most of
    the budget's cost. Drivers specialise their success path on this answer:

    * ``INLINE_TOKEN_BUCKET`` (exactly :class:`RetryBudget`): call ``record_success(True)`` only when
      ``budget._refill`` (the bucket is not full); a full bucket (the healthy steady state) has nothing to record.
    * ``INLINE_RATIO`` (exactly :class:`RatioRetryBudget` on the driver's own clock): with ``now`` the driver's
      reading at the attempt's start, ``if now >= budget._roll_due: budget._advance(now)``, then
      ``budget._pending.append(None)``: the deposit of :meth:`RatioRetryBudget.record_success` without a clock
      read.
    * ``INLINE_NONE``: anything else (subclasses, ``RedisRetryBudget``, users' budgets): call ``record_success``.
    """
    kind = type(budget)
    if kind is RetryBudget:
        return INLINE_TOKEN_BUCKET
    if kind is RatioRetryBudget and budget._monotonic == monotonic:  # type: ignore[attr-defined]
        return INLINE_RATIO
    return INLINE_NONE


def _positive(value: float, parameter: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{parameter} must be a number, got {value!r}")
    number = to_float(value)
    if not 0.0 < number < math.inf:  # also refuses NaN, and ints too large for a float
        raise ValueError(f"{parameter} must be a finite number > 0, got {value!r}")
    return number
