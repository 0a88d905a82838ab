"""stalwart.httpx: the standard HTTP resilience policy for httpx (optional extra ``stalwart[httpx]``).

``AsyncResilientTransport`` / ``ResilientTransport`` wrap any inner httpx transport with retries (classified by
method, status and error; ``Retry-After`` honoured), a circuit breaker and a bulkhead per origin, a per-attempt
timeout and the ambient deadline. ``ResilientClient`` is the seed's combined client built on them.
See docs/http-client.md.
"""

from __future__ import annotations

from ._classify import (
    IDEMPOTENT_METHODS,
    RETRYABLE_STATUSES,
    is_breaker_failure_exception,
    is_breaker_failure_status,
    is_idempotent_request,
    is_retryable_exception,
    is_retryable_status,
    parse_http_date,
    parse_retry_after,
)
from ._client import ResilientClient
from ._config import ResilienceConfig
from ._operations import SEED_OPERATIONS, Operation
from ._options import PerOriginBudget
from ._sync_transport import ResilientTransport
from ._transport import AsyncResilientTransport

__all__ = [
    "AsyncResilientTransport",
    "IDEMPOTENT_METHODS",
    "Operation",
    "PerOriginBudget",
    "RETRYABLE_STATUSES",
    "ResilienceConfig",
    "ResilientClient",
    "ResilientTransport",
    "SEED_OPERATIONS",
    "is_breaker_failure_exception",
    "is_breaker_failure_status",
    "is_idempotent_request",
    "is_retryable_exception",
    "is_retryable_status",
    "parse_http_date",
    "parse_retry_after",
]
