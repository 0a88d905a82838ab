"""The stalwart exception hierarchy.

Every exception carries what the caller needs to act on it::

    StalwartError
    ├── Rejected                         a local decision: the call was not attempted
    │   ├── CircuitOpenError(name, retry_after)
    │   ├── BulkheadFullError(name, max_concurrent, queued)
    │   └── RateLimitedError(retry_after)
    ├── DeadlineExceeded                 also a builtin TimeoutError
    └── IdempotencyError
        ├── IdempotencyConflict          the key was reused with another request (HTTP 422)
        ├── IdempotencyInProgress        the first request with this key is still running (HTTP 409)
        └── StoreUnavailable             the store cannot decide (HTTP 503; fail closed)

``Rejected`` errors are never counted as failures by a circuit breaker and never retried by default.
When retries are exhausted the last exception of the call propagates unchanged (with a PEP 678 note); stalwart
does not wrap it.

Every exception survives ``pickle`` and ``copy`` (a process pool, a task queue) with its type, its attributes and
its ``__notes__``: the custom ``__reduce__`` methods return the instance ``__dict__`` as state.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "DeadlineExceeded",
    "IdempotencyConflict",
    "IdempotencyError",
    "IdempotencyInProgress",
    "RateLimitedError",
    "Rejected",
    "StalwartError",
    "StoreUnavailable",
]


class StalwartError(Exception):
    """Base class of every exception stalwart raises itself."""


class Rejected(StalwartError):
    """The call was refused locally before reaching the dependency (open circuit, full bulkhead, rate limit)."""


class CircuitOpenError(Rejected):
    """A circuit breaker refused the call.

    Attributes:
        name: the breaker's name.
        retry_after: seconds (``float``) until the breaker admits a probe, or ``None`` when unknown
            (for example a breaker forced open).
    """

    def __init__(self, name: str, retry_after: float | None = None) -> None:
        self.name = name
        self.retry_after = retry_after
        if retry_after is None:
            msg = f"circuit {name!r} is open"
        else:
            msg = f"circuit {name!r} is open; retry after {retry_after:.3f}s"
        super().__init__(msg)

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, float | None], dict[str, Any]]:
        return (type(self), (self.name, self.retry_after), self.__dict__)


class BulkheadFullError(Rejected):
    """A bulkhead refused the call: its queue was full or the wait for a slot timed out.

    Attributes:
        name: the bulkhead's name.
        max_concurrent: the bulkhead's concurrency limit.
        queued: how many callers were waiting when this one was refused.
    """

    def __init__(self, name: str, max_concurrent: int, queued: int) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.queued = queued
        super().__init__(f"bulkhead {name!r} is full ({max_concurrent} running, {queued} queued)")

    def __reduce__(self) -> tuple[type[BulkheadFullError], tuple[str, int, int], dict[str, Any]]:
        return (type(self), (self.name, self.max_concurrent, self.queued), self.__dict__)


class RateLimitedError(Rejected):
    """A rate limiter refused the call.

    Attributes:
        retry_after: seconds (``float``) until a call may be admitted, or ``None`` when unknown.
    """

    def __init__(self, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__("rate limited" if retry_after is None else f"rate limited; retry after {retry_after:.3f}s")

    def __reduce__(self) -> tuple[type[RateLimitedError], tuple[float | None], dict[str, Any]]:
        return (type(self), (self.retry_after,), self.__dict__)


class DeadlineExceeded(StalwartError, TimeoutError):
    """A stalwart deadline or timeout expired.

    Raised only for expiries stalwart itself caused; a cancellation from outside passes through as
    ``asyncio.CancelledError``. Subclass of the builtin :class:`TimeoutError`, so ``except TimeoutError`` catches it.

    Attributes:
        timeout: the limit in seconds (``float``) that expired, when known.
    """

    def __init__(self, message: str = "deadline exceeded", *, timeout: float | None = None) -> None:
        self.timeout = timeout
        super().__init__(message)

    def __reduce__(self) -> tuple[type[DeadlineExceeded], tuple[Any, ...], dict[str, Any]]:
        return (type(self), self.args, self.__dict__)  # the dict restores timeout, notes and any other attribute


def _rebuild_deadline_exceeded(message: str, timeout: float | None) -> DeadlineExceeded:
    """Rebuild a ``DeadlineExceeded`` pickled by an earlier version (kept so that such pickles still load)."""
    return DeadlineExceeded(message, timeout=timeout)


class IdempotencyError(StalwartError):
    """Base class of the idempotency errors."""


class IdempotencyConflict(IdempotencyError):
    """The idempotency key was reused with a different request fingerprint (HTTP 422)."""


class IdempotencyInProgress(IdempotencyError):
    """A request with the same idempotency key is still being processed (HTTP 409).

    Attributes:
        retry_after: seconds (``float``) after which the client may try again, or ``None``.
    """

    def __init__(self, message: str = "request in progress", *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class StoreUnavailable(IdempotencyError):
    """The idempotency store could not be reached or could not decide (HTTP 503; the handler does not run).

    Backend errors (redis, psycopg, sqlite3) are chained as ``__cause__``.
    """
