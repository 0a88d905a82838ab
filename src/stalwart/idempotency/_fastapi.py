"""The FastAPI dependency exposing the idempotency state (needs Starlette, which FastAPI brings)."""

from __future__ import annotations

from starlette.requests import Request

from ._state import IdempotencyState

__all__ = ["idempotency_state"]


def idempotency_state(request: Request) -> IdempotencyState | None:
    """FastAPI dependency: the request's :class:`IdempotencyState`, or None without a claimed key.

    Use as ``state: IdempotencyState | None = Depends(idempotency_state)``. FastAPI resolves dependencies before it
    validates the body, so resolving this dependency does not mark the endpoint as started; decorate the endpoint
    with :func:`~stalwart.idempotency.idempotent` for that.
    """
    state = request.scope.get("state") or {}
    found = state.get("idempotency")
    return found if isinstance(found, IdempotencyState) else None
