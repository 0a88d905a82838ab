"""ASGI integrations (pure ASGI: any framework, Starlette and FastAPI included).

- :class:`DeadlineMiddleware`: the caller's deadline (``Request-Deadline-Ms``, ``grpc-timeout``, ...) becomes the
  handler's ambient deadline, minus a buffer; 504 when it passes before the response starts.
"""

from __future__ import annotations

from ._deadline_middleware import DeadlineMiddleware

__all__ = ["DeadlineMiddleware"]
