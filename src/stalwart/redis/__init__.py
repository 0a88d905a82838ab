"""Shared state in Redis for a fleet of processes (requires ``redis``: ``pip install stalwart[redis]``).

* :class:`RedisRetryBudget`: one retry budget per dependency, shared by every process.
"""

from __future__ import annotations

from ._budget import RedisRetryBudget

__all__ = ["RedisRetryBudget"]
