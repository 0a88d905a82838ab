"""The optional circuit breaker in front of the idempotency store's claims.

The breaker's permit contract (docs/internals.md, breaker section): exactly one of ``record_success``,
``record_failure`` or ``release`` per permit, and only one even when it raises (an event hook raising a
``BaseException``, a failing clock): the breaker settles the permit before anything that may raise, so a permit is
never handed back from an ``except`` around a settling call. Hence the ``try`` below covers the claim alone and
settles its failures; the success is recorded after it, and nothing can raise between ``acquire`` and the ``try``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from stalwart._exceptions import StoreUnavailable

__all__ = ["claim_through_breaker"]

T = TypeVar("T")


async def claim_through_breaker(breaker: Any, claim: Callable[[], Awaitable[T]], give_back: Callable[[], None]) -> T:
    """Run ``claim()`` under a permit of ``breaker`` and settle the permit exactly once.

    Args:
        breaker: a :class:`~stalwart.CircuitBreaker` (only its permit API is used).
        claim: makes the claim. ``StoreUnavailable`` (the store did not answer) is recorded as a failure; any other
            exception (an undecodable record, cancellation, an interrupt) hands the permit back without an outcome.
            ``claim`` gives back a claim it may have left applied before it raises.
        give_back: called when recording the claim's success raises: the claim is held but its request will not
            run, so it must be given back (it must not raise).

    Returns:
        What ``claim()`` returned.

    Raises:
        CircuitOpenError: the breaker refused (``claim`` was not called; there is no permit to settle).
        BaseException: whatever ``claim()`` or the settling call raised (the permit is settled all the same).
    """
    permit = breaker.acquire()
    try:
        result = await claim()
    except StoreUnavailable:
        breaker.record_failure(permit)
        raise
    except BaseException:
        breaker.release(permit)
        raise
    try:
        breaker.record_success(permit)
    except BaseException:
        give_back()
        raise
    return result
