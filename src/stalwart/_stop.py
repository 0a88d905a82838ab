"""Stop conditions for power users: ``Retry(on=..., stop=sw.stop.after_attempt(5) | sw.stop.after_elapsed(10.0))``.

Pure: a condition looks at the numbers the retry decision already has (the attempt that just failed, the seconds
since the first attempt started, the delay before the next attempt, the time left on the ambient deadline) and
never reads a clock. :meth:`stalwart._retry_policy.RetryRules.decide` asks the condition after a retryable failure,
once the next delay is known, so the success path never evaluates it.

Conditions combine with ``|`` (stop when either says stop) and ``&`` (stop when both do). Each condition that
says stop names the reason reported in the ``RetryGaveUp`` event and the exception note: ``after_attempt`` →
``"max_attempts"``, ``after_elapsed`` → ``"max_elapsed"``, ``when`` → ``"stop"``; ``a | b`` reports the first that
applies; ``a & b`` reports the reason both share, else ``"stop"``. The front door (``max_attempts``,
``max_elapsed``) needs none of this (tenacity's ``stop_after_attempt`` / ``stop_before_delay`` were the model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from ._config import check_int, to_seconds

if TYPE_CHECKING:
    from ._retry_policy import GiveUpReason

__all__ = ["StopCondition", "StopState", "stop"]


@dataclass(frozen=True, slots=True)
class StopState:
    """What a :meth:`stop.when` predicate sees after a failed attempt.

    Attributes:
        attempt: the attempt that just failed, ``1`` for the first call.
        elapsed: seconds since the first attempt started.
        delay: seconds the retry would wait before the next attempt (backoff or server pushback).
        deadline_remaining: seconds left on the ambient deadline, or ``None`` when there is none.
    """

    attempt: int
    elapsed: float
    delay: float
    deadline_remaining: float | None


class StopCondition:
    """Base class of the stop conditions; combine them with ``|`` and ``&``."""

    __slots__ = ()

    def check(
        self, attempt: int, elapsed: float, delay: float, deadline_remaining: float | None
    ) -> GiveUpReason | None:
        """The reason to stop after failed attempt ``attempt``, or ``None`` to go on (see :class:`StopState`)."""
        raise NotImplementedError

    def __or__(self, other: StopCondition) -> StopCondition:
        if not isinstance(other, StopCondition):
            return NotImplemented
        return _AnyOf(_flatten(_AnyOf, self) + _flatten(_AnyOf, other))

    def __and__(self, other: StopCondition) -> StopCondition:
        if not isinstance(other, StopCondition):
            return NotImplemented
        return _AllOf(_flatten(_AllOf, self) + _flatten(_AllOf, other))


def _flatten(kind: type[_AnyOf | _AllOf], condition: StopCondition) -> tuple[StopCondition, ...]:
    return condition.conditions if isinstance(condition, kind) else (condition,)


@dataclass(frozen=True, slots=True)
class _AfterAttempt(StopCondition):
    attempts: int

    def __post_init__(self) -> None:
        check_int(self.attempts, "attempts", minimum=1)

    def check(
        self, attempt: int, elapsed: float, delay: float, deadline_remaining: float | None
    ) -> GiveUpReason | None:
        return "max_attempts" if attempt >= self.attempts else None

    def __repr__(self) -> str:
        return f"stop.after_attempt({self.attempts!r})"


@dataclass(frozen=True, slots=True)
class _AfterElapsed(StopCondition):
    seconds: float

    def __post_init__(self) -> None:
        seconds: float | timedelta = self.seconds
        object.__setattr__(self, "seconds", to_seconds(seconds, "seconds", allow_zero=False))

    def check(
        self, attempt: int, elapsed: float, delay: float, deadline_remaining: float | None
    ) -> GiveUpReason | None:
        return "max_elapsed" if elapsed + delay >= self.seconds else None

    def __repr__(self) -> str:
        return f"stop.after_elapsed({self.seconds!r})"


@dataclass(frozen=True, slots=True)
class _When(StopCondition):
    predicate: Callable[[StopState], bool]

    def __post_init__(self) -> None:
        if not callable(self.predicate):
            raise TypeError(f"predicate must be a callable (StopState) -> bool, got {self.predicate!r}")

    def check(
        self, attempt: int, elapsed: float, delay: float, deadline_remaining: float | None
    ) -> GiveUpReason | None:
        return "stop" if self.predicate(StopState(attempt, elapsed, delay, deadline_remaining)) else None

    def __repr__(self) -> str:
        return f"stop.when({self.predicate!r})"


@dataclass(frozen=True, slots=True)
class _AnyOf(StopCondition):
    conditions: tuple[StopCondition, ...]

    def check(
        self, attempt: int, elapsed: float, delay: float, deadline_remaining: float | None
    ) -> GiveUpReason | None:
        for condition in self.conditions:
            reason = condition.check(attempt, elapsed, delay, deadline_remaining)
            if reason is not None:
                return reason
        return None

    def __repr__(self) -> str:
        return "(" + " | ".join(repr(c) for c in self.conditions) + ")"


@dataclass(frozen=True, slots=True)
class _AllOf(StopCondition):
    conditions: tuple[StopCondition, ...]

    def check(
        self, attempt: int, elapsed: float, delay: float, deadline_remaining: float | None
    ) -> GiveUpReason | None:
        reasons = set()
        for condition in self.conditions:
            reason = condition.check(attempt, elapsed, delay, deadline_remaining)
            if reason is None:
                return None
            reasons.add(reason)
        return reasons.pop() if len(reasons) == 1 else "stop"

    def __repr__(self) -> str:
        return "(" + " & ".join(repr(c) for c in self.conditions) + ")"


class stop:  # noqa: N801 - a namespace used as ``sw.stop.after_attempt(5)``
    """Stop conditions for ``Retry(stop=...)``; combine them with ``|`` and ``&``.

    Example: ``sw.stop.after_attempt(5) | sw.stop.after_elapsed(10.0)`` stops at the 5th failed attempt or when
    the next attempt would start 10 s or more after the first, whichever comes first.
    """

    __slots__ = ()

    @staticmethod
    def after_attempt(attempts: int) -> StopCondition:
        """Stop once ``attempts`` attempts (the first included) have failed; ``attempts >= 1``.

        Raises:
            TypeError, ValueError: ``attempts`` is not an int >= 1.
        """
        return _AfterAttempt(attempts)

    @staticmethod
    def after_elapsed(seconds: float | timedelta) -> StopCondition:
        """Stop when the next attempt would start ``seconds`` or more after the first began (as ``max_elapsed``).

        Raises:
            TypeError, ValueError: ``seconds`` is not a finite duration > 0.
        """
        return _AfterElapsed(seconds)  # type: ignore[arg-type]  # a timedelta is normalised in __post_init__

    @staticmethod
    def when(predicate: Callable[[StopState], bool]) -> StopCondition:
        """Stop when ``predicate(state)`` is true (a :class:`StopState`); reported as reason ``"stop"``.

        Raises:
            TypeError: ``predicate`` is not callable.
        """
        return _When(predicate)
