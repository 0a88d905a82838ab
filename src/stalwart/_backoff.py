"""Backoff schedules with jitter: pure functions of the attempt index, the previous delay and a random source.

Nothing here sleeps, reads a clock or keeps state: :meth:`Backoff.delay` maps ``(n, previous, random)`` to a delay
in seconds, and the retry drivers (and the httpx transport) call it between attempts.

The formulas follow Marc Brooker's AWS Architecture Blog article "Exponential Backoff And Jitter" (2015,
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/): the delay grows with the attempt index,
is capped, and is randomised so that clients that failed together do not retry together (the thundering herd).
The article measures *full jitter* as the best trade-off between total work and completion time, so it is the
default here. ``Jitter.proportional(0.5)`` reproduces the seed's x U(0.5, 1.5).

Every delay returned is finite, at least ``0`` and at most ``max_delay``, for any attempt index: the growth is
computed only while it is below the cap (the index at which the cap is reached is found once, with logarithms), so
attempt 10,000 (or 10**100) costs the same as attempt 3 and never overflows.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar, Literal, TypeAlias

from ._config import to_float, to_seconds

__all__ = ["Backoff", "Jitter", "JitterKind"]

JitterKind: TypeAlias = Literal["none", "full", "equal", "decorrelated", "proportional"]
_KINDS: tuple[str, ...] = ("none", "full", "equal", "decorrelated", "proportional")


@dataclass(frozen=True, slots=True, repr=False)
class Jitter:
    """How a backoff delay is randomised; use the constants and :meth:`proportional`, not the constructor.

    With ``d`` the capped delay for attempt ``n`` and ``u`` a draw of ``random()`` in [0, 1):

    ============================ ============================================ =================================
    jitter                       delay                                        source
    ============================ ============================================ =================================
    ``Jitter.NONE``              ``d``                                        plain exponential backoff
    ``Jitter.FULL`` (default)    ``u·d``, i.e. U(0, d)                        AWS article, "Full Jitter"
    ``Jitter.EQUAL``             ``d/2 + u·d/2``, i.e. U(d/2, d)              AWS article, "Equal Jitter"
    ``Jitter.DECORRELATED``      ``min(cap, U(initial, 3·previous))``         AWS article, "Decorrelated Jitter"
    ``Jitter.proportional(f)``   ``d·U(1-f, 1+f)``, then capped               the seed (``f=0.5``)
    ============================ ============================================ =================================

    ``DECORRELATED`` ignores the growth parameters (``multiplier``, ``increment``): each delay is drawn between
    ``initial`` and three times the previous delay (``previous`` below ``initial``, e.g. ``0.0`` before the first
    retry, counts as ``initial``). The cap ``max_delay`` applies after every kind of jitter.

    Attributes:
        kind: ``"none"``, ``"full"``, ``"equal"``, ``"decorrelated"`` or ``"proportional"``.
        factor: the spread ``f`` of ``proportional`` in [0, 1]; ``0.0`` for the other kinds.

    Raises:
        ValueError: unknown ``kind``, or ``factor`` outside [0, 1] (or set for a kind that takes none).
    """

    kind: JitterKind
    factor: float = 0.0

    NONE: ClassVar[Jitter]
    FULL: ClassVar[Jitter]
    EQUAL: ClassVar[Jitter]
    DECORRELATED: ClassVar[Jitter]

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}; got {self.kind!r}")
        factor = self.factor
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            raise TypeError(f"factor must be a number in [0, 1], got {factor!r}")
        if self.kind == "proportional":
            if not 0.0 <= factor <= 1.0:  # also refuses NaN
                raise ValueError(f"factor must be in [0, 1], got {factor!r}")
        elif factor != 0.0:
            raise ValueError(f"factor applies only to Jitter.proportional, got {factor!r} for {self.kind!r}")
        object.__setattr__(self, "factor", float(factor))

    @classmethod
    def proportional(cls, factor: float) -> Jitter:
        """Multiply the delay by a uniform factor in ``[1 - factor, 1 + factor]``, then cap it.

        Args:
            factor: the relative spread in [0, 1]; the seed's ±50 % is ``0.5``.

        Raises:
            ValueError: ``factor`` is NaN or outside [0, 1].
        """
        return cls("proportional", factor)

    def __repr__(self) -> str:
        if self.kind == "proportional":
            return f"Jitter.proportional({self.factor!r})"
        return f"Jitter.{self.kind.upper()}"


Jitter.NONE = Jitter("none")
Jitter.FULL = Jitter("full")
Jitter.EQUAL = Jitter("equal")
Jitter.DECORRELATED = Jitter("decorrelated")


@dataclass(frozen=True, slots=True)
class Backoff:
    """A delay schedule: ``base(n) = min(max_delay, initial · multiplierⁿ + increment · n)``, then jitter, then the cap.

    ``n`` is the retry index: ``0`` before the first retry (after the first attempt failed), ``1`` before the second,
    and so on. Build one with :meth:`exponential` (the default schedule), :meth:`linear` or :meth:`constant`; the
    constructor takes the same fields directly and its defaults equal ``Backoff.exponential()``.

    Attributes:
        initial: ``base(0)``, seconds (``float`` or ``timedelta``, normalised to ``float``); default ``1.0``.
        multiplier: growth factor per retry, ``>= 1``; default ``2.0``.
        increment: seconds added per retry (linear growth), ``>= 0``; default ``0.0``.
        max_delay: the cap, seconds, finite and ``>= initial``; applied before and after jitter; default ``60.0``.
        jitter: a :class:`Jitter`; default :attr:`Jitter.FULL` (the AWS article's recommendation).

    Raises:
        TypeError: a parameter has the wrong type.
        ValueError: a parameter is NaN, negative or infinite; ``multiplier < 1``; ``max_delay < initial``; or
            ``initial == 0`` with :attr:`Jitter.DECORRELATED` (every delay would be 0). The message names it.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    increment: float = 0.0
    max_delay: float = 60.0
    jitter: Jitter = Jitter.FULL
    # Index from which base(n) is the cap; computed once so that delay() never grows a huge number.
    _cap_at: float = field(init=False, repr=False, compare=False, default=math.inf)

    def __post_init__(self) -> None:
        initial = to_seconds(self.initial, "initial")
        increment = to_seconds(self.increment, "increment")
        max_delay = to_seconds(self.max_delay, "max_delay")
        multiplier = self.multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
            raise TypeError(f"multiplier must be a number >= 1, got {multiplier!r}")
        if not 1.0 <= to_float(multiplier) < math.inf:  # also refuses NaN, and ints too large for a float
            raise ValueError(f"multiplier must be a finite number >= 1, got {multiplier!r}")
        if max_delay < initial:
            raise ValueError(f"max_delay must be >= initial ({initial!r}), got {max_delay!r}")
        if not isinstance(self.jitter, Jitter):
            raise TypeError(
                f"jitter must be a Jitter (Jitter.FULL, Jitter.proportional(0.5), ...), got {self.jitter!r}"
            )
        if self.jitter.kind == "decorrelated" and initial == 0.0:
            raise ValueError("initial must be > 0 with Jitter.DECORRELATED (every delay would be 0)")

        cap_at = math.inf
        if increment > 0.0:
            # initial + increment·n >= max_delay from here on.
            cap_at = (max_delay - initial) / increment
        if multiplier > 1.0 and initial > 0.0:
            # initial·multiplierⁿ > max_delay for n > log(max_delay/initial) / log(multiplier); below that index the
            # power stays at most max_delay/initial, so computing it cannot overflow.
            x = (math.log(max_delay) - math.log(initial)) / math.log(multiplier)
            cap_at = min(cap_at, math.floor(x) + 1)
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "increment", increment)
        object.__setattr__(self, "max_delay", max_delay)
        object.__setattr__(self, "multiplier", float(multiplier))
        object.__setattr__(self, "_cap_at", cap_at)

    @classmethod
    def exponential(
        cls,
        initial: float | timedelta = 1.0,
        multiplier: float = 2.0,
        max_delay: float | timedelta = 60.0,
        jitter: Jitter = Jitter.FULL,
    ) -> Backoff:
        """``min(max_delay, initial · multiplierⁿ)``, jittered (full jitter by default), capped again.

        Defaults are the seed's (1 s, multiplier 2, 60 s cap) with the AWS article's full jitter: before jitter the
        delays are 1, 2, 4, 8, 16, 32, 60, 60, ... seconds.

        Raises:
            ValueError: see :class:`Backoff`.
        """
        return cls(
            initial=to_seconds(initial, "initial"),
            multiplier=multiplier,
            max_delay=to_seconds(max_delay, "max_delay"),
            jitter=jitter,
        )

    @classmethod
    def linear(
        cls,
        initial: float | timedelta = 1.0,
        increment: float | timedelta = 1.0,
        max_delay: float | timedelta = 60.0,
        jitter: Jitter = Jitter.NONE,
    ) -> Backoff:
        """``min(max_delay, initial + increment · n)`` seconds before retry ``n`` (0 for the first retry).

        Args:
            initial: the first delay, seconds (float or ``timedelta``; default 1.0).
            increment: added for each further retry, seconds (default 1.0).
            max_delay: the cap, seconds (default 60.0); it holds after jitter too.
            jitter: default :attr:`Jitter.NONE` (a linear schedule is usually wanted as written).

        Raises:
            ValueError: a duration is negative, NaN or infinite, or ``initial`` exceeds ``max_delay`` (the message
                names the parameter; see :class:`Backoff`).
        """
        return cls(
            initial=to_seconds(initial, "initial"),
            multiplier=1.0,
            increment=to_seconds(increment, "increment"),
            max_delay=to_seconds(max_delay, "max_delay"),
            jitter=jitter,
        )

    @classmethod
    def constant(cls, delay: float | timedelta, jitter: Jitter = Jitter.NONE) -> Backoff:
        """The same ``delay`` seconds before every retry (jitter, if given, is capped at ``delay``).

        Raises:
            ValueError: ``delay`` is negative, NaN or infinite (the message names ``delay``).
        """
        seconds = to_seconds(delay, "delay")
        return cls(initial=seconds, multiplier=1.0, increment=0.0, max_delay=seconds, jitter=jitter)

    def delay(self, n: int, previous: float = 0.0, random: Callable[[], float] = _random.random) -> float:
        """The delay before retry ``n`` (``0`` for the first retry), in seconds.

        Args:
            n: the retry index, ``>= 0``.
            previous: the delay this schedule returned for ``n - 1`` (``0.0`` before the first retry); only
                :attr:`Jitter.DECORRELATED` uses it.
            random: a source of uniform floats in [0, 1) (``random.random`` by default); a seeded
                ``random.Random(s).random`` makes the schedule deterministic.

        Returns:
            A finite ``float`` in ``[0, max_delay]``. A ``random`` that returns values outside [0, 1) (or NaN) cannot
            push the result outside that range.

        Raises:
            ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        cap = self.max_delay
        jitter = self.jitter
        kind = jitter.kind
        if kind == "decorrelated":
            low = self.initial
            high = 3.0 * (previous if previous > low else low)  # NaN or small previous -> initial
            d = low + random() * (high - low)
        else:
            if n >= self._cap_at:
                d = cap
            else:
                try:
                    d = (self.initial * self.multiplier**n if self.initial else 0.0) + self.increment * n
                except OverflowError:  # only for extreme parameters; the true value is above the cap
                    d = cap
                d = min(d, cap)
            if kind == "full":
                d = random() * d
            elif kind == "equal":
                d = 0.5 * d + random() * 0.5 * d
            elif kind == "proportional":
                f = jitter.factor
                d = d * (1.0 - f + 2.0 * f * random())
        if d > cap:
            return cap
        if d >= 0.0:
            return d
        return 0.0  # negative or NaN: only from a misbehaving random source

    def delays(self, count: int, random: Callable[[], float] = _random.random) -> list[float]:
        """The first ``count`` delays of the schedule (for documentation, tests and reasoning about totals).

        Raises:
            ValueError: ``count`` is negative.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        out: list[float] = []
        previous = 0.0
        for n in range(count):
            previous = self.delay(n, previous, random)
            out.append(previous)
        return out
