"""Validation helpers shared by the policies' constructors.

Invalid configuration raises :class:`ValueError` (or :class:`TypeError` for a wrong type) naming the parameter,
at construction time, never at the first call; never ``OverflowError`` (an ``int`` too large for a float is
infinite, hence refused where infinity is).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TypeVar

C = TypeVar("C")

__all__ = ["check_clock", "check_int", "check_percent", "to_float", "to_seconds", "to_seconds_or_none", "to_units"]


def to_seconds(value: float | timedelta, parameter: str, *, allow_zero: bool = True, allow_inf: bool = False) -> float:
    """Normalise a duration to float seconds.

    Args:
        value: seconds as ``int``/``float``, or a :class:`datetime.timedelta`.
        parameter: the parameter's name, for error messages.
        allow_zero: whether ``0`` is accepted.
        allow_inf: whether ``math.inf`` is accepted.

    Raises:
        TypeError: ``value`` is not a number or timedelta (``bool`` is refused too).
        ValueError: NaN, negative, zero when not allowed, or infinite when not allowed.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{parameter} must be a number of seconds or a timedelta, got {value!r}")
    else:
        seconds = to_float(value)
    if math.isnan(seconds):
        raise ValueError(f"{parameter} must be a number of seconds, got NaN")
    if seconds < 0:
        raise ValueError(f"{parameter} must be {'>=' if allow_zero else '>'} 0 seconds, got {seconds!r}")
    if seconds == 0 and not allow_zero:
        raise ValueError(f"{parameter} must be > 0 seconds, got 0")
    if math.isinf(seconds) and not allow_inf:
        raise ValueError(f"{parameter} must be finite, got {seconds!r}")
    return seconds


def to_float(value: float) -> float:
    """``float(value)``, with an ``int`` too large for a float mapped to ``±math.inf`` instead of ``OverflowError``.

    Callers then refuse it with their usual ``ValueError`` naming the parameter ("must be finite").
    """
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def to_seconds_or_none(
    value: float | timedelta | None, parameter: str, *, allow_zero: bool = True, allow_inf: bool = False
) -> float | None:
    """Like :func:`to_seconds`, passing ``None`` through."""
    if value is None:
        return None
    return to_seconds(value, parameter, allow_zero=allow_zero, allow_inf=allow_inf)


def to_units(
    value: float | timedelta, parameter: str, *, per_second: int, maximum: int, allow_zero: bool = False
) -> int:
    """A duration as a whole number of units (``per_second`` units a second, e.g. 1000 for milliseconds), rounded
    up, for a setting that a server or a library reads as a bounded integer.

    Rounding up keeps a positive duration from becoming 0 units, which servers read as "no limit" (Redis ``WAIT``,
    PostgreSQL's timeouts) or "no waiting" (SQLite's ``busy_timeout``). ``maximum`` is the largest count the
    reader takes: past it a server refuses the setting on every use or, worse, wraps it (SQLite reads a
    ``busy_timeout`` past 2**31 - 1 ms as 0), so the duration is refused here, at construction.

    Raises:
        TypeError: as :func:`to_seconds`.
        ValueError: as :func:`to_seconds`, or more than ``maximum`` units (the message gives the longest duration
            accepted, in seconds).
    """
    seconds = to_seconds(value, parameter, allow_zero=allow_zero)
    longest = maximum / per_second
    if seconds > longest:
        raise ValueError(f"{parameter} must be at most {longest!r} seconds, got {seconds!r}")
    return min(math.ceil(seconds * per_second), maximum)  # min: the product may round just past the maximum


def check_int(value: int, parameter: str, *, minimum: int, maximum: int | None = None) -> int:
    """Check an integer parameter is an ``int`` (not ``bool``) in ``[minimum, maximum]``.

    Raises:
        TypeError: not an ``int``.
        ValueError: below ``minimum`` or above ``maximum`` (when given).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{parameter} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{parameter} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{parameter} must be <= {maximum:_}, got {value!r}")
    return value


def check_percent(value: float, parameter: str) -> float:
    """Check a percentage lies in (0, 100].

    Raises:
        TypeError: not a number.
        ValueError: NaN or outside (0, 100].
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{parameter} must be a percentage in (0, 100], got {value!r}")
    if not 0 < value <= 100:  # also refuses NaN (and compares huge ints exactly, without converting them)
        raise ValueError(f"{parameter} must be a percentage in (0, 100], got {value!r}")
    return float(value)


def check_clock(clock: C, *methods: str) -> C:
    """Check ``clock`` is a clock *instance* with a callable ``monotonic()`` (and the other ``methods`` named), not
    a class or ``None``.

    Raises:
        TypeError: naming ``clock``.
    """
    needed = ("monotonic", *methods)
    if isinstance(clock, type) or not all(callable(getattr(clock, name, None)) for name in needed):
        raise TypeError(f"clock must be a Clock instance ({', '.join(f'{n}()' for n in needed)}), got {clock!r}")
    return clock
