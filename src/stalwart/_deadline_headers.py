"""Deadline headers between services: parsing the incoming budget and formatting the outgoing one (pure).

Between processes a deadline travels as a *relative* budget (gRPC's rule): the caller sends how much time is left,
the callee starts its own clock on arrival, so clock skew between hosts does not matter. Four formats are
understood on the way in; one relative format (``Request-Deadline-Ms`` by default, or ``grpc-timeout``) is sent
on the way out.

- ``Request-Deadline-Ms``: remaining milliseconds, 1 to 8 ASCII digits (``0`` to ``99999999``, about 27.8 h).
  stalwart's own header, sent by the httpx transport.
- ``grpc-timeout``: gRPC's wire format (PROTOCOL-HTTP2.md, "Timeout"): 1 to 8 ASCII digits and a unit, ``H`` hours,
  ``M`` minutes, ``S`` seconds, ``m`` milliseconds, ``u`` microseconds, ``n`` nanoseconds (``250m``, ``5S``).
- ``x-envoy-expected-rq-timeout-ms``: the timeout Envoy applies to this request, milliseconds, 1 to 10 ASCII digits.
- ``X-Deadline``: the seed's *absolute* deadline, POSIX epoch seconds (``1700000000`` or ``1700000000.25``).
  Measured against this host's wall clock, so clock skew between the hosts goes straight into the budget (a clock
  2 s behind the caller's adds 2 s). Understood for compatibility; never sent.

Every parser takes the raw header value (``bytes`` as ASGI gives it, or ``str``) and returns either a budget in
float seconds (finite, ``>= 0``; ``0.0`` means already spent) or ``None`` for a value it does not accept, so no
input can raise or produce a NaN, a negative or an infinite budget. Optional whitespace (spaces, tabs) around a
value is allowed (RFC 9110 §5.5); signs, exponents, underscores, non-ASCII digits and empty values are not.

Nothing here reads a clock: the wall-clock time needed by ``X-Deadline`` is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

__all__ = [
    "DEFAULT_INCOMING_HEADERS",
    "ENVOY_TIMEOUT_HEADER",
    "GRPC_TIMEOUT_HEADER",
    "REQUEST_DEADLINE_HEADER",
    "X_DEADLINE_HEADER",
    "format_grpc_timeout",
    "format_request_deadline_ms",
    "parse_envoy_timeout_ms",
    "parse_grpc_timeout",
    "parse_request_deadline_ms",
    "parse_x_deadline",
    "read_budget",
]

REQUEST_DEADLINE_HEADER = "request-deadline-ms"
GRPC_TIMEOUT_HEADER = "grpc-timeout"
ENVOY_TIMEOUT_HEADER = "x-envoy-expected-rq-timeout-ms"
X_DEADLINE_HEADER = "x-deadline"

DEFAULT_INCOMING_HEADERS: tuple[str, ...] = (
    REQUEST_DEADLINE_HEADER,
    GRPC_TIMEOUT_HEADER,
    ENVOY_TIMEOUT_HEADER,
    X_DEADLINE_HEADER,
)
"""The incoming headers :class:`stalwart.asgi.DeadlineMiddleware` reads by default (lower-case, as in ASGI)."""

MAX_REQUEST_DEADLINE_MS = 99_999_999
"""The largest ``Request-Deadline-Ms`` value (8 digits, about 27.8 hours)."""

_OWS = b" \t"
_GRPC_UNITS: dict[int, float] = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}
_GRPC_MAX = 99_999_999
# Outgoing grpc-timeout: the finest unit whose 8 digits hold the budget (as grpc-go's encodeTimeout).
_GRPC_FORMATS: tuple[tuple[float, str], ...] = (
    (1e9, "n"),
    (1e6, "u"),
    (1e3, "m"),
    (1.0, "S"),
    (1.0 / 60.0, "M"),
    (1.0 / 3600.0, "H"),
)
_MAX_X_DEADLINE_LENGTH = 32


def _raw(value: bytes | str) -> bytes | None:
    """The value as bytes with optional whitespace removed; ``None`` if it is not latin-1 text."""
    if isinstance(value, str):
        try:
            value = value.encode("latin-1")
        except UnicodeEncodeError:
            return None
    return value.strip(_OWS)


def _digits(raw: bytes, max_digits: int) -> int | None:
    """``raw`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits, else ``None``."""
    # bytes.isdigit() accepts ASCII digits only (str.isdigit() would accept "²" and "٣").
    if 0 < len(raw) <= max_digits and raw.isdigit():
        return int(raw)
    return None


def parse_request_deadline_ms(value: bytes | str) -> float | None:
    """Parse ``Request-Deadline-Ms``: remaining milliseconds, 1 to 8 ASCII digits.

    Returns:
        The budget in float seconds (``0.0``: already spent), or ``None`` when the value is malformed.
    """
    raw = _raw(value)
    if raw is None:
        return None
    millis = _digits(raw, 8)
    return None if millis is None else millis / 1000.0


def parse_envoy_timeout_ms(value: bytes | str) -> float | None:
    """Parse ``x-envoy-expected-rq-timeout-ms``: milliseconds, 1 to 10 ASCII digits.

    Returns:
        The budget in float seconds, or ``None`` when the value is malformed.
    """
    raw = _raw(value)
    if raw is None:
        return None
    millis = _digits(raw, 10)
    return None if millis is None else millis / 1000.0


def parse_grpc_timeout(value: bytes | str) -> float | None:
    """Parse ``grpc-timeout``: ``TimeoutValue TimeoutUnit``, 1 to 8 ASCII digits then one of ``H M S m u n``.

    Source: gRPC over HTTP/2 (PROTOCOL-HTTP2.md, "Timeout"). A value of ``0`` is accepted (already spent).

    Returns:
        The budget in float seconds, or ``None`` when the value is malformed.
    """
    raw = _raw(value)
    if raw is None or len(raw) < 2:
        return None
    unit = _GRPC_UNITS.get(raw[-1])
    if unit is None:
        return None
    amount = _digits(raw[:-1], 8)
    return None if amount is None else amount * unit


def parse_x_deadline(value: bytes | str, now: float) -> float | None:
    """Parse the seed's ``X-Deadline``: an absolute POSIX epoch time in seconds, against ``now``.

    The value is digits with an optional fraction (``1700000000`` or ``1700000000.25``; at most 32 characters).
    The budget is ``value - now``, ``0.0`` when that is negative (already passed). Clock skew between the hosts
    goes straight into the budget: prefer a relative header between services.

    Args:
        value: the raw header value.
        now: this host's wall-clock time in POSIX seconds (finite).

    Returns:
        The budget in float seconds, or ``None`` when the value is malformed (or ``now`` is not finite).
    """
    raw = _raw(value)
    if raw is None or not 0 < len(raw) <= _MAX_X_DEADLINE_LENGTH or not math.isfinite(now):
        return None
    whole, dot, fraction = raw.partition(b".")
    if not whole.isdigit() or (dot and not fraction.isdigit()):
        return None
    left = float(raw) - now  # digits and one dot: float() cannot fail, and 32 digits stay finite
    return left if left > 0.0 else 0.0


_PARSERS: dict[bytes, Callable[[bytes], float | None]] = {
    REQUEST_DEADLINE_HEADER.encode(): parse_request_deadline_ms,
    GRPC_TIMEOUT_HEADER.encode(): parse_grpc_timeout,
    ENVOY_TIMEOUT_HEADER.encode(): parse_envoy_timeout_ms,
}
_X_DEADLINE = X_DEADLINE_HEADER.encode()
_NAMES = {name.encode(): name for name in DEFAULT_INCOMING_HEADERS}


def read_budget(
    headers: Iterable[tuple[bytes, bytes]],
    accepted: frozenset[bytes],
    wall_clock: Callable[[], float],
    malformed: list[str] | None = None,
) -> float | None:
    """The tightest valid budget among the ``accepted`` deadline headers of a request, in float seconds.

    Precedence: every accepted header present is read (a header repeated counts once per occurrence) and the
    **smallest** valid budget wins, whichever format it came in: each one is a limit someone upstream enforces (the
    caller's own deadline, a proxy's route timeout), so the request cannot usefully outlive the tightest. A
    malformed value is ignored.

    Args:
        headers: the request's headers as ASGI gives them: ``(name, value)`` byte pairs, names in lower case.
        accepted: the lower-case header names to read, as bytes (a subset of :data:`DEFAULT_INCOMING_HEADERS`;
            other names are ignored).
        wall_clock: POSIX seconds, called only when an ``X-Deadline`` header is present.
        malformed: if given, the (lower-case) name of each accepted header whose value was present but not valid
            is appended to it.

    Returns:
        The budget (``0.0``: already spent), or ``None`` when no accepted header held a valid value.
    """
    best: float | None = None
    for name, value in headers:
        if name not in accepted:
            continue
        parser = _PARSERS.get(name)
        if parser is not None:
            seconds = parser(value)
        elif name == _X_DEADLINE:
            seconds = parse_x_deadline(value, wall_clock())
        else:
            continue
        if seconds is None:
            if malformed is not None:
                malformed.append(_NAMES[name])
        elif best is None or seconds < best:
            best = seconds
    return best


def format_request_deadline_ms(seconds: float) -> str:
    """The ``Request-Deadline-Ms`` value for a remaining budget of ``seconds``.

    Rounds **down** to whole milliseconds, so the callee is never given more time than the caller has left (a
    budget under a millisecond is sent as ``0``, already spent), and caps at ``99999999`` (8 digits). A negative
    or NaN budget is sent as ``0``.

    Raises:
        TypeError: ``seconds`` is not a number.
    """
    if not seconds > 0.0:  # also NaN
        return "0"
    if seconds >= MAX_REQUEST_DEADLINE_MS / 1000.0:
        return str(MAX_REQUEST_DEADLINE_MS)
    return str(int(seconds * 1000.0))


def format_grpc_timeout(seconds: float) -> str:
    """The ``grpc-timeout`` value for a remaining budget of ``seconds``.

    Uses the finest unit whose 8 digits hold the budget (nanoseconds first, as grpc-go does) and rounds **down** in
    that unit, so the callee is never given more time than the caller has left. A negative or NaN budget is
    ``0n``; a budget beyond 99999999 hours is capped there.

    Raises:
        TypeError: ``seconds`` is not a number.
    """
    if not seconds > 0.0:  # also NaN
        return "0n"
    for per_second, unit in _GRPC_FORMATS:
        amount = seconds * per_second
        if amount <= _GRPC_MAX:
            return f"{int(amount)}{unit}"
    return f"{_GRPC_MAX}H"
