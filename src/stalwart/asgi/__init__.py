"""ASGI integrations (pure ASGI: any framework, Starlette and FastAPI included).

- :class:`DeadlineMiddleware`: the caller's deadline (``Request-Deadline-Ms``, ``grpc-timeout``, ...) becomes the
  handler's ambient deadline, minus a buffer; 504 when it passes before the response starts.
- :class:`KeyedBulkheadMiddleware`: a bulkhead compartment per user or tenant (from a resolver); 503 with
  ``Retry-After`` when a user's compartment, or the shared limit, is full.
- :class:`HealthApp`: ``GET /health/circuits`` and ``/health/bulkheads``, the registry's snapshot as JSON; 503 while
  a breaker marked ``critical=True`` is open.
"""

from __future__ import annotations

from ._bulkhead_middleware import KeyedBulkheadMiddleware, KeyResolver
from ._deadline_middleware import DeadlineMiddleware
from ._health import HealthApp

__all__ = ["DeadlineMiddleware", "HealthApp", "KeyResolver", "KeyedBulkheadMiddleware"]
