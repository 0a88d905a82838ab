"""The retry decision, as pure logic: after a failed attempt, retry (after which delay, and why) or give up (and why).

Nothing here sleeps, awaits, locks or reads a clock. A driver measures ``elapsed`` (seconds since the first attempt
started) and ``deadline_remaining`` (seconds left on the ambient deadline, or ``None``), classifies the outcome
itself, extracts any server-requested delay, and asks :meth:`RetryRules.decide`. :class:`stalwart.Retry` drives
its sync and async loops with it; the httpx transport drives its own loop (it classifies responses and parses
``Retry-After`` itself) with the same rules, so both stop for the same reasons.

The checks, in order (the first that applies wins):

1. ``retryable`` is false → give up, ``"not_retryable"``.
2. ``attempt >= max_attempts`` → give up, ``"max_attempts"`` (``max_attempts`` counts the first attempt).
3. The delay: a valid server-requested ``retry_after`` (a number ``>= 0``; anything else is ignored, never an
   error) is used as is when it is at most ``max_retry_after``; longer, or infinite (``math.inf``, an ``int`` too
   large for a float) → give up, ``"retry_after_too_long"`` (waiting that long is not worth it; the caller gets the
   last outcome at once). Otherwise the backoff schedule's
   delay for retry index ``n = attempt - 1``. After pushback the schedule continues where it was: ``n`` is the
   retry index whatever the source of the earlier delays, and the server's delay does not replace the ``previous``
   delay that decorrelated jitter grows from (``backoff_delay`` carries the last *computed* delay forward).
4. A ``stop`` condition (:mod:`stalwart._stop`, for power users) says stop → give up with the reason it names
   (``"max_attempts"``, ``"max_elapsed"`` or ``"stop"``).
5. ``max_elapsed`` is set and ``elapsed + delay >= max_elapsed`` → give up, ``"max_elapsed"``.
6. A deadline is set and ``delay + min_attempt_time >= deadline_remaining`` → give up, ``"deadline"``: never sleep
   into a timeout; the caller gets the last error now instead of a ``DeadlineExceeded`` later. When the deadline has
   passed, nothing is retried.

A retry budget (issue 4) is consulted by the driver after a ``retry`` decision, so that a retry that would not happen
anyway does not spend a token; see :class:`RetryBudgetHook`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from ._backoff import Backoff
from ._config import check_int, to_seconds, to_seconds_or_none
from ._stop import StopCondition

__all__ = [
    "DEFAULT_BACKOFF",
    "DelayReason",
    "GiveUpReason",
    "RetryBudgetHook",
    "RetryDecision",
    "RetryRules",
    "add_give_up_note",
    "give_up_note",
    "valid_retry_after",
]

DelayReason: TypeAlias = Literal["backoff", "retry_after"]
"""Why a retry waits the delay it does: the computed schedule, or server pushback."""

GiveUpReason: TypeAlias = Literal[
    "not_retryable", "max_attempts", "max_elapsed", "deadline", "retry_after_too_long", "budget", "stop"
]
"""Why a retrying call stopped (``"budget"`` is decided by the driver, after the rules said retry)."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """The answer of :meth:`RetryRules.decide`.

    Attributes:
        retry: whether to make another attempt.
        delay: seconds to wait before it (``0.0`` when giving up).
        reason: a :data:`DelayReason` when ``retry``, else a :data:`GiveUpReason`.
        backoff_delay: the ``previous_delay`` to pass to the next decision (the last *computed* backoff delay;
            unchanged by pushback).
    """

    retry: bool
    delay: float
    reason: DelayReason | GiveUpReason
    backoff_delay: float


def valid_retry_after(value: object) -> float | None:
    """A server-requested delay as ``float`` seconds ``>= 0``, or ``None`` when it is not a number ``>= 0``.

    A number is any real number (``int``, ``float``, ``fractions.Fraction``, ``decimal.Decimal``, NumPy scalars:
    anything registered as ``numbers.Real``) or a ``datetime.timedelta``, as every other duration stalwart takes.
    Negative, NaN, boolean and non-numeric values are ignored (``None``): a bad header falls back to the computed
    backoff, it never raises (RFC 9110 §10.2.3 allows a recipient to ignore an invalid field value). A request to
    wait forever, ``math.inf`` or a number too large for a float, is valid and returned as ``math.inf``, longer
    than any ``max_retry_after``: a bigger request must never mean an earlier retry (RFC 9111 §1.2.2 likewise has a
    recipient treat an overflowing delta-seconds as the largest value it can represent, not ignore it).
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int (or Fraction) too large for a float: longer than anything
        return math.inf
    except (TypeError, ValueError):  # a numbers.Real that cannot say what float it is
        return None
    if seconds >= 0.0:  # false for NaN
        return seconds
    return None


DEFAULT_BACKOFF: Backoff = Backoff.exponential()
"""The default schedule of :class:`RetryRules` and :class:`stalwart.Retry`."""


@dataclass(frozen=True, slots=True)
class RetryRules:
    """When to stop retrying and how long to wait: the configuration half of :class:`stalwart.Retry`, pure.

    Attributes:
        max_attempts: attempts in total, including the first (``>= 1``); default ``3``.
        backoff: the delay schedule; default ``Backoff.exponential()`` (1 s, doubling, 60 s cap, full jitter).
        max_elapsed: seconds since the first attempt started after which no attempt starts, or ``None`` (the ambient
            deadline still applies); ``> 0``; a ``timedelta`` is accepted.
        max_retry_after: the longest server-requested delay honoured, seconds (``math.inf`` honours any finite one);
            a longer request gives up at once; default ``60.0``.
        min_attempt_time: seconds an attempt needs at least to be worth starting: a retry is abandoned when less than
            ``delay + min_attempt_time`` is left on the deadline; default ``0.0``.
        stop: a stop condition (``stop.after_attempt(5) | stop.after_elapsed(10.0)``) checked in addition to the
            limits above, or ``None`` (default).

    Raises:
        TypeError, ValueError: an invalid parameter (the message names it).
    """

    max_attempts: int = 3
    backoff: Backoff = DEFAULT_BACKOFF
    max_elapsed: float | None = None
    max_retry_after: float = 60.0
    min_attempt_time: float = 0.0
    stop: StopCondition | None = None

    def __post_init__(self) -> None:
        check_int(self.max_attempts, "max_attempts", minimum=1)
        if not isinstance(self.backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff (Backoff.exponential(), ...), got {self.backoff!r}")
        max_elapsed: float | timedelta | None = self.max_elapsed
        object.__setattr__(self, "max_elapsed", to_seconds_or_none(max_elapsed, "max_elapsed", allow_zero=False))
        max_retry_after: float | timedelta = self.max_retry_after
        object.__setattr__(self, "max_retry_after", to_seconds(max_retry_after, "max_retry_after", allow_inf=True))
        min_attempt_time: float | timedelta = self.min_attempt_time
        object.__setattr__(self, "min_attempt_time", to_seconds(min_attempt_time, "min_attempt_time"))
        if self.stop is not None and not isinstance(self.stop, StopCondition):
            raise TypeError(f"stop must be a stop condition (stop.after_attempt(5), ...) or None, got {self.stop!r}")

    def decide(
        self,
        *,
        attempt: int,
        elapsed: float,
        deadline_remaining: float | None,
        previous_delay: float,
        rng: Callable[[], float],
        retry_after: float | timedelta | None = None,
        retryable: bool = True,
    ) -> RetryDecision:
        """Decide what follows the failed attempt number ``attempt``.

        Args:
            attempt: the attempt that just failed, ``1`` for the first call.
            elapsed: seconds since the first attempt started (the driver's ``now - start``).
            deadline_remaining: seconds left on the ambient deadline (``0.0`` once passed), or ``None``.
            previous_delay: the ``backoff_delay`` of the previous decision, ``0.0`` before the first retry.
            rng: uniform floats in [0, 1), for jitter.
            retry_after: the server-requested delay (seconds, or a ``timedelta``), or ``None``; invalid values are
                ignored (see :func:`valid_retry_after`).
            retryable: whether the outcome may be retried at all (the driver's classification).

        Returns:
            A :class:`RetryDecision`; see the module docstring for the order of the checks.
        """
        if not retryable:
            return RetryDecision(False, 0.0, "not_retryable", previous_delay)
        if attempt >= self.max_attempts:
            return RetryDecision(False, 0.0, "max_attempts", previous_delay)
        backoff_delay = previous_delay
        reason: DelayReason = "backoff"
        pushback = None if retry_after is None else valid_retry_after(retry_after)
        if pushback is not None:
            if pushback > self.max_retry_after or pushback == math.inf:
                return RetryDecision(False, 0.0, "retry_after_too_long", previous_delay)
            delay = pushback
            reason = "retry_after"
        else:
            delay = backoff_delay = self.backoff.delay(attempt - 1, previous_delay, rng)
        stop = self.stop
        if stop is not None:
            stop_reason = stop.check(attempt, elapsed, delay, deadline_remaining)
            if stop_reason is not None:
                return RetryDecision(False, 0.0, stop_reason, backoff_delay)
        max_elapsed = self.max_elapsed
        if max_elapsed is not None and elapsed + delay >= max_elapsed:
            return RetryDecision(False, 0.0, "max_elapsed", backoff_delay)
        if deadline_remaining is not None and delay + self.min_attempt_time >= deadline_remaining:
            return RetryDecision(False, 0.0, "deadline", backoff_delay)
        return RetryDecision(True, delay, reason, backoff_delay)


_REASON_TEXT: dict[str, str] = {
    "not_retryable": "the last error is not retryable",
    "max_attempts": "no attempts left",
    "max_elapsed": "the next attempt would start after max_elapsed",
    "deadline": "the next attempt would start at or after the deadline",
    "retry_after_too_long": "the server asked to wait longer than max_retry_after",
    "budget": "the retry budget is exhausted",
    "stop": "a stop condition was met",
}


def give_up_note(name: str, attempts: int, elapsed: float, reason: GiveUpReason) -> str:
    """The PEP 678 note added to the last exception when a retrying call gives up.

    Example: ``"stalwart: retry 'payments' gave up after 3 attempts over 3.012s (no attempts left)"``.
    """
    plural = "attempt" if attempts == 1 else "attempts"
    return f"stalwart: {name!r} gave up after {attempts} {plural} over {elapsed:.3f}s ({_REASON_TEXT[reason]})"


class _OwnedNote(str):
    """A note that remembers which policy added it (a ``str``, as PEP 678 requires)."""

    owner: int


def add_give_up_note(exc: BaseException, owner: object, note: str) -> None:
    """Add ``note`` to ``exc``, replacing a note the same ``owner`` (a policy) added to it before.

    One exception object can end many calls: a failed future or task that many callers await (single-flight, a
    shared connection attempt) raises the *same* instance in each of them. Appending a note per call made its
    ``__notes__`` grow without bound (and every traceback print longer), as re-raising one instance grows its
    traceback (ipython PR #8017). Each policy keeps one note per exception, its latest; notes of other policies
    (nested retries) and the caller's own notes are kept.
    """
    tagged = _OwnedNote(note)
    tagged.owner = id(owner)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list) and notes:
        notes[:] = [n for n in notes if not (isinstance(n, _OwnedNote) and n.owner == tagged.owner)]
    exc.add_note(tagged)


@runtime_checkable
class RetryBudgetHook(Protocol):
    """What a retry driver needs from a retry budget (implemented by :class:`stalwart.RetryBudget`, issue 4).

    A driver with a budget calls, per attempt, exactly one of :meth:`record_success` (the attempt's outcome is not
    retryable: a success, an accepted result, or a non-retryable response) or :meth:`record_failure` (a retryable
    outcome), and before each retry that the rules allow, :meth:`try_acquire_retry`; a refusal ends the call with
    its last outcome (``"budget"``) and a ``RetryBudgetExhausted`` event. An attempt that ends with an exception
    ``on`` does not cover (or with cancellation) records nothing. The success path costs one method call.

    ``first`` is true for a call's first attempt, so that a ratio budget can count calls rather than attempts.
    """

    name: str

    def record_success(self, first: bool) -> None:
        """Record an attempt whose outcome is not retryable."""

    def record_failure(self, first: bool) -> None:
        """Record an attempt whose outcome is retryable."""

    def try_acquire_retry(self) -> bool:
        """Whether one retry may be made now; a ``True`` answer spends what the retry costs."""
