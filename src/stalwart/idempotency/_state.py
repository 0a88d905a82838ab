"""The idempotency state a handler sees, the ``@idempotent`` route decorator and the execution marker.

While the middleware runs a handler for a claimed key it publishes an :class:`IdempotencyState` in
``scope["state"]["idempotency"]`` (``request.state.idempotency`` in Starlette) and in a context variable read by
:func:`current_idempotency`. Decorating an endpoint with :func:`idempotent` gives it its own settings and sets the
"execution started" marker when the endpoint body really runs: a response produced before that (FastAPI's request
validation 422, a 404/405 from routing) then releases the record instead of storing it (spec §2.9).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from stalwart._policy import is_async_callable

from ._keys import derived_key
from ._options import check_overrides

__all__ = ["ROUTE_CONFIG_ATTRIBUTE", "IdempotencyState", "current_idempotency", "idempotent"]

F = TypeVar("F", bound=Callable[..., Any])

ROUTE_CONFIG_ATTRIBUTE = "__stalwart_idempotency__"
"""Attribute holding an endpoint's :class:`~stalwart.idempotency.IdempotencyConfig` overrides (a dict)."""

_current: ContextVar[IdempotencyState | None] = ContextVar("stalwart_idempotency", default=None)


class IdempotencyState:
    """What the handler of a claimed idempotency key can know and do.

    Attributes:
        key: the client's idempotency key (treat as sensitive; do not log).
        record_id: the scope HMAC identifying the record.
        fence: the record's fence token: pass it to writes that reject ``fence < max_seen`` (reclaim mode).
        attempt: executions started for this key (1 unless reclaimed).
        replayed: always False for a handler (a replay never runs the handler).
        started: True once the endpoint body runs (set by :func:`idempotent` or :meth:`mark_started`).
        release_requested: True after :meth:`release`.
        connection: in transactional mode, the database connection whose open transaction commits together with
            the idempotency record (use it for the handler's business writes); None otherwise.
    """

    __slots__ = (
        "_secret",
        "attempt",
        "connection",
        "fence",
        "key",
        "record_id",
        "release_requested",
        "replayed",
        "started",
    )

    def __init__(self, *, key: str, record_id: str, fence: int, attempt: int, secret: bytes) -> None:
        self.key = key
        self.record_id = record_id
        self.fence = fence
        self.attempt = attempt
        self.replayed = False
        self.started = False
        self.release_requested = False
        self.connection: Any = None
        self._secret = secret

    def derived_key(self, namespace: str) -> str:
        """A stable idempotency key for a downstream call (e.g. ``"stripe"``), the same on every attempt."""
        return derived_key(self._secret, self.record_id, namespace)

    def mark_started(self) -> None:
        """Record that the endpoint started executing (the decorator does this for you)."""
        self.started = True

    def release(self) -> None:
        """Declare this attempt safe to retry: the record is released instead of storing the response."""
        self.release_requested = True

    def __repr__(self) -> str:
        return f"IdempotencyState(record_id={self.record_id[:12]}…, fence={self.fence}, attempt={self.attempt})"


def current_idempotency() -> IdempotencyState | None:
    """The state of the idempotent request being handled in this context, or None."""
    return _current.get()


def idempotent(**overrides: Any) -> Callable[[F], F]:
    """Decorate a Starlette/FastAPI endpoint: per-route settings plus the execution-started marker.

    Apply it *under* the route decorator (``@app.post(...)`` then ``@idempotent(required=True)``). The keyword
    arguments override fields of the middleware's :class:`~stalwart.idempotency.IdempotencyConfig` for this route;
    ``idempotent(enabled=False)`` turns idempotency off for it. The wrapper keeps the signature (FastAPI follows
    ``__wrapped__``) and stays a coroutine function when the endpoint is one.

    Raises:
        TypeError: a name that is not an :class:`~stalwart.idempotency.IdempotencyConfig` field (or ``enabled``).
        ValueError: a value no configuration accepts (checked here, not at the route's first request).
    """
    overrides = dict(overrides)
    check_overrides(overrides)

    def decorate(fn: F) -> F:
        if is_async_callable(fn):  # also an async endpoint behind a plain decorator or an object's async __call__

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                state = _current.get()
                if state is not None:
                    state.started = True
                return await fn(*args, **kwargs)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                state = _current.get()
                if state is not None:
                    state.started = True
                return fn(*args, **kwargs)

            wrapper = sync_wrapper
        setattr(wrapper, ROUTE_CONFIG_ATTRIBUTE, overrides)
        return wrapper  # type: ignore[no-any-return]

    return decorate
