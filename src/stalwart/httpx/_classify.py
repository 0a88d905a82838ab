"""HTTP classification (pure): which methods may be retried, which statuses and errors are transient, which count
as a failure of the dependency, and the parsing of ``Retry-After``.

Nothing here sleeps, awaits, locks or reads a clock: ``parse_retry_after`` takes the current wall-clock time as an
argument. The transport's driver loops call these functions.

Sources:
    * RFC 9110 §9.2.2 (idempotent methods), §10.2.3 (``Retry-After``), §5.6.7 (HTTP-date formats) and §15.
    * The IETF draft "The Idempotency-Key HTTP Header Field" (a POST/PATCH carrying a key may be retried).
    * The seed (SEED-NOTES.md §15.3): retry 408, 429, 500, 502, 503, 504; never 400, 401, 403, 404, 422.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import httpx

__all__ = [
    "BREAKER_FAILURE_STATUSES",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENT_METHODS",
    "MAX_DELTA_SECONDS",
    "NOT_SENT_ERRORS",
    "RETRYABLE_STATUSES",
    "is_breaker_failure_exception",
    "is_breaker_failure_status",
    "is_idempotent_request",
    "is_retryable_exception",
    "is_retryable_status",
    "parse_delta_seconds",
    "parse_http_date",
    "parse_retry_after",
    "request_was_not_sent",
]

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods RFC 9110 §9.2.2 defines as idempotent; the only ones retried by default after a request may have
reached the server."""

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses worth another attempt (the seed's list): timeouts, rate limiting and transient server errors."""

BREAKER_FAILURE_STATUSES: frozenset[int] = frozenset(range(500, 600))
"""Statuses a circuit breaker counts as a failure of the dependency: every 5xx. A 4xx (including 408 and 429) is the
caller's problem or pushback, never a sign that the dependency is down."""

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
"""The header that makes a POST/PATCH safe to retry (IETF idempotency-key draft)."""

NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Errors raised before any byte of the request left this process (no connection was obtained): safe to retry
for every method."""

_LOCAL_ERRORS: tuple[type[Exception], ...] = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)
"""Transport errors caused by the request itself, not by the network or the server: never retried."""

MAX_DELTA_SECONDS = 10**18
"""Largest delta-seconds value read as a number; a longer one is an overflow, read as ``math.inf`` (RFC 9111
§1.2.2: a recipient treats an overflowing delta-seconds as the largest value it can represent, never ignores it)."""


def is_retryable_status(status: int, statuses: frozenset[int] = RETRYABLE_STATUSES) -> bool:
    """True when ``status`` is worth another attempt (default 408, 429, 500, 502, 503, 504)."""
    return status in statuses


def is_breaker_failure_status(status: int, statuses: frozenset[int] = BREAKER_FAILURE_STATUSES) -> bool:
    """True when ``status`` counts as a circuit-breaker failure (default: every 5xx; never a 4xx)."""
    return status in statuses


def is_idempotent_request(
    method: str,
    headers: httpx.Headers,
    methods: frozenset[str] = IDEMPOTENT_METHODS,
    idempotency_header: str | None = IDEMPOTENCY_KEY_HEADER,
) -> bool:
    """True when a request may be repeated after it may have reached the server.

    Args:
        method: the request method, upper case.
        headers: the request headers.
        methods: methods retried without further evidence (default :data:`IDEMPOTENT_METHODS`).
        idempotency_header: a header whose presence makes any method retryable (default ``Idempotency-Key``;
            ``None`` disables the rule).
    """
    if method in methods:
        return True
    return idempotency_header is not None and idempotency_header in headers


def request_was_not_sent(exc: BaseException) -> bool:
    """True when ``exc`` proves nothing was sent (:data:`NOT_SENT_ERRORS`): retryable whatever the method."""
    return isinstance(exc, NOT_SENT_ERRORS)


def is_retryable_exception(exc: BaseException) -> bool:
    """True for transient errors: connection and protocol errors, httpx timeouts, and ``TimeoutError`` (which
    includes :class:`~stalwart.DeadlineExceeded` from a per-attempt timeout).

    ``UnsupportedProtocol`` and ``LocalProtocolError`` (the request is malformed) and everything else are not.
    """
    if isinstance(exc, httpx.TransportError):
        return not isinstance(exc, _LOCAL_ERRORS)
    return isinstance(exc, TimeoutError)


def is_breaker_failure_exception(exc: BaseException) -> bool:
    """True when ``exc`` counts as a circuit-breaker failure: the same transient errors as
    :func:`is_retryable_exception`. Other exceptions end the breaker permit without an outcome."""
    return is_retryable_exception(exc)


# RFC 9110 §5.6.7: IMF-fixdate, and the obsolete rfc850-date and asctime-date forms recipients must accept.
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_LONG = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
_IMF_FIXDATE = re.compile(rf"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT", re.ASCII)
_RFC850_DATE = re.compile(rf"{_DAY_LONG}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT", re.ASCII)
_ASCTIME_DATE = re.compile(rf"{_DAY} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})", re.ASCII)
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: index for index, name in enumerate(_MONTH_NAMES, 1)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_http_date(value: str, now: float) -> float | None:
    """Parse an HTTP-date (RFC 9110 §5.6.7) into POSIX seconds, or ``None`` when it is not one.

    Accepts the three formats recipients must accept: IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), rfc850-date
    (``Sunday, 06-Nov-94 08:49:37 GMT``; a two-digit year more than 50 years in the future of ``now`` means the
    previous century) and asctime-date (``Sun Nov  6 08:49:37 1994``). A leap second (``:60``) is accepted. The
    day name is not checked against the date. Never raises.

    Args:
        value: the header value, surrounding whitespace already removed.
        now: the current time, POSIX seconds (only used for two-digit years).
    """
    match = _IMF_FIXDATE.fullmatch(value) or _ASCTIME_DATE.fullmatch(value)
    two_digit_year = False
    if match is None:
        match = _RFC850_DATE.fullmatch(value)
        if match is None:
            return None
        two_digit_year = True
    year = int(match["year"])
    if two_digit_year:
        if not math.isfinite(now) or abs(now) > 2.5e11:  # outside datetime's range of years
            return None
        current_year = datetime.fromtimestamp(now, UTC).year
        year += current_year - current_year % 100
        if year > current_year + 50:
            year -= 100
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"])
    if hour > 23 or minute > 59 or second > 60:
        return None
    try:
        day = datetime(year, _MONTHS[match["month"]], int(match["day"]), tzinfo=UTC)
    except ValueError:  # day 0, 31 February, year 0
        return None
    return (day - _EPOCH).total_seconds() + hour * 3600 + minute * 60 + second


def parse_delta_seconds(value: str | None) -> float | None:
    """A delta-seconds header value (``1*DIGIT``, RFC 9110 §10.2.3) in seconds, or ``None`` when it must be ignored.

    Used for ``Retry-After``'s first form and for the ``RateLimit-Reset`` pushback header of the IETF RateLimit
    header fields drafts. Surrounding spaces and tabs are allowed; a missing, empty, signed, fractional or non-ASCII
    value is ``None``. A value above :data:`MAX_DELTA_SECONDS` (any number of digits) is an overflow and reads as
    ``math.inf``, the longest wait there is (RFC 9111 §1.2.2): a larger request must never mean an earlier retry,
    so the retry rules give up on it (``retry_after_too_long``) as on any request beyond ``max_retry_after``.
    Never raises.
    """
    if not isinstance(value, str):
        return None
    text = value.strip(" \t")
    if not (text.isdigit() and text.isascii()):
        return None
    digits = text.lstrip("0")
    if len(digits) > 19:  # beyond MAX_DELTA_SECONDS whatever the digits (and int() never sees absurd lengths)
        return math.inf
    seconds = int(digits or "0")
    return float(seconds) if seconds <= MAX_DELTA_SECONDS else math.inf


def parse_retry_after(value: str | None, now: float) -> float | None:
    """The delay a ``Retry-After`` header asks for, in seconds, or ``None`` when it must be ignored.

    RFC 9110 §10.2.3: the value is either delta-seconds (``1*DIGIT``: ``120``) or an HTTP-date
    (``Fri, 31 Dec 1999 23:59:59 GMT``; see :func:`parse_http_date`), meaning "that instant minus ``now``".

    Returns ``None`` — never raises — for a missing, empty, malformed, negative (``-1``), fractional (``1.5``: not
    delta-seconds) or past value, and when ``now`` is not finite for a date. The caller then falls back to its
    computed backoff. An overflowing delta-seconds (more than :data:`MAX_DELTA_SECONDS`) is ``math.inf``, not
    ignored (RFC 9111 §1.2.2): the retry rules then give up at once (``retry_after_too_long``), as for any request
    longer than ``max_retry_after``.

    Args:
        value: the raw header value (``None`` when absent).
        now: the current wall-clock time in POSIX seconds; for a date, prefer the response's own ``Date`` header
            (the server's clock), which makes the result immune to clock skew between the hosts.

    Returns:
        Seconds (``float``, ``>= 0``; ``math.inf`` for an overflowing delta-seconds) or ``None``.
    """
    if not isinstance(value, str):
        return None
    text = value.strip(" \t")
    if not text:
        return None
    if text.isdigit() and text.isascii():
        return parse_delta_seconds(text)
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        return None
    at = parse_http_date(text, now)
    if at is None or at < now:
        return None
    return at - now
