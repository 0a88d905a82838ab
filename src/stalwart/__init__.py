"""stalwart: resilience for Python services.

Timeouts and deadlines, retries with backoff and jitter, circuit breakers, bulkheads, fallbacks and a resilient
httpx client, for asyncio and sync code. Everything public is re-exported here; implementation modules are private.
"""

from ._adaptive import AdaptiveTimeout, AdaptiveTimeoutKey
from ._backoff import Backoff, Jitter
from ._breaker import CircuitBreaker, CircuitState, CircuitStatistics
from ._budget import RatioRetryBudget, RetryBudget, RetryBudgetStatistics
from ._bulkhead import Bulkhead, BulkheadStatistics
from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._deadline import Deadline, current_deadline, deadline, remaining_time, without_deadline
from ._events import (
    CallRejected,
    CircuitCallRecorded,
    CircuitRateExceeded,
    CircuitStateChanged,
    DeadlineExpired,
    Event,
    HedgeStarted,
    Hook,
    IdempotentReplay,
    LoggingHook,
    RetryBudgetExhausted,
    RetryGaveUp,
    RetryScheduled,
    add_hook,
    remove_hook,
)
from ._exceptions import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    IdempotencyConflict,
    IdempotencyError,
    IdempotencyInProgress,
    RateLimitedError,
    Rejected,
    StalwartError,
    StoreUnavailable,
)
from ._fallback import Fallback
from ._hedge import Hedge
from ._keyed_bulkhead import CompartmentFullError, KeyedBulkhead, KeyedBulkheadStatistics
from ._pipeline import Pipeline
from ._policy import Policy
from ._registry import Registry, registry
from ._retry import Retry
from ._stop import StopCondition, StopState, stop
from ._timeout import Timeout, with_timeout
from ._windows import CountWindow, TimeWindow

__version__ = "0.1.0"

__all__ = [
    "AdaptiveTimeout",
    "AdaptiveTimeoutKey",
    "Backoff",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadStatistics",
    "CallRejected",
    "CircuitBreaker",
    "CircuitCallRecorded",
    "CircuitOpenError",
    "CircuitRateExceeded",
    "CircuitState",
    "CircuitStateChanged",
    "CircuitStatistics",
    "Clock",
    "CompartmentFullError",
    "CountWindow",
    "Deadline",
    "DeadlineExceeded",
    "DeadlineExpired",
    "Event",
    "Fallback",
    "Hedge",
    "HedgeStarted",
    "Hook",
    "IdempotencyConflict",
    "IdempotencyError",
    "IdempotencyInProgress",
    "IdempotentReplay",
    "Jitter",
    "KeyedBulkhead",
    "KeyedBulkheadStatistics",
    "LoggingHook",
    "Pipeline",
    "Policy",
    "RateLimitedError",
    "RatioRetryBudget",
    "Registry",
    "Rejected",
    "Retry",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryBudgetStatistics",
    "RetryGaveUp",
    "RetryScheduled",
    "SYSTEM_CLOCK",
    "StalwartError",
    "StopCondition",
    "StopState",
    "StoreUnavailable",
    "SystemClock",
    "TimeWindow",
    "Timeout",
    "__version__",
    "add_hook",
    "current_deadline",
    "deadline",
    "registry",
    "remaining_time",
    "remove_hook",
    "stop",
    "with_timeout",
    "without_deadline",
]
