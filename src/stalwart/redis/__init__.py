"""Shared state in Redis for a fleet of processes (requires ``redis``: ``pip install stalwart[redis]``).

* :class:`RedisRetryBudget`: one retry budget per dependency, shared by every process.
* :class:`RedisCircuitStore`: circuit breakers shared by every process
  (``CircuitBreaker(name, store=RedisCircuitStore(client))``).
"""

from __future__ import annotations

from ._breaker_store import RedisCircuitStore
from ._budget import RedisRetryBudget

__all__ = ["RedisCircuitStore", "RedisRetryBudget"]
