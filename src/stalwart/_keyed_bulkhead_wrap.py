"""Specialised decorator wrappers for :class:`~stalwart.KeyedBulkhead`: the hot path written out once per flavour.

Each wrapper takes the key's permit, then a shared slot, calls the function and gives both back, with the fast
paths of ``KeyedBulkhead._take``, ``Bulkhead.acquire`` / ``acquire_sync`` and ``KeyedBulkhead._give`` inline (the
same steps as ``run_for`` / ``call_for``, one frame less per call). A sync function that returns a coroutine is
refused (:func:`~stalwart._policy.refuse_coroutine`): the slot would have covered nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from ._policy import refuse_coroutine

if TYPE_CHECKING:
    from ._keyed_bulkhead import KeyedBulkhead

__all__ = ["wrap_async", "wrap_sync"]


def wrap_async(bulkhead: KeyedBulkhead, fn: Callable[..., Any], key_of: Callable[..., Hashable]) -> Callable[..., Any]:
    """The decorator wrapper of a coroutine function ``fn``."""
    compartments = bulkhead._compartments
    take = bulkhead._take
    give = bulkhead._give
    list_idle = bulkhead._list_idle
    shared = bulkhead._global
    waiters = shared._waiters
    shared_permits = shared._permits
    release_shared = shared.release
    max_per_key = bulkhead._max_per_key

    @functools.wraps(fn)
    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        # run_for(), written out again: one frame less per call.
        key = key_of(*args, **kwargs)
        compartment = compartments.get(key)
        if compartment is None:
            compartment = take(key)
        else:
            try:
                compartment.permits.pop()
            except IndexError:
                compartment = take(key)
            else:
                if compartment.dead:
                    compartment.permits.append(True)
                    compartment = take(key)
        try:
            if waiters:
                await shared.acquire()
            else:
                try:
                    shared_permits.pop()
                except IndexError:
                    await shared.acquire()
        except BaseException:
            give(compartment)
            raise
        try:
            return await fn(*args, **kwargs)
        finally:
            release_shared()
            permits = compartment.permits
            permits.append(True)
            if len(permits) == max_per_key and not compartment.listed:
                list_idle(compartment)

    return async_wrapper


def wrap_sync(bulkhead: KeyedBulkhead, fn: Callable[..., Any], key_of: Callable[..., Hashable]) -> Callable[..., Any]:
    """The decorator wrapper of a sync ``fn``."""
    lookup = bulkhead._compartments.get  # the dict is never replaced
    take = bulkhead._take
    give = bulkhead._give
    list_idle = bulkhead._list_idle
    shared = bulkhead._global
    waiters = shared._waiters
    shared_permits = shared._permits
    shared_lock = shared._lock
    grant_locked = shared._grant_locked
    acquire_shared = shared.acquire_sync
    max_per_key = bulkhead._max_per_key

    @functools.wraps(fn)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        # call_for(), written out (the fast paths of _take, Bulkhead.acquire_sync / release and _give inline).
        # Calls without keyword arguments (the common case) skip unpacking the empty dict.
        key = key_of(*args, **kwargs) if kwargs else key_of(*args)
        compartment = lookup(key)
        if compartment is None:
            compartment = take(key)
        else:
            try:
                compartment.permits.pop()
            except IndexError:
                compartment = take(key)
            else:
                if compartment.dead:
                    compartment.permits.append(True)
                    compartment = take(key)
        if waiters:
            try:
                acquire_shared()
            except BaseException:
                give(compartment)
                raise
        else:
            try:
                shared_permits.pop()
            except IndexError:
                try:
                    acquire_shared()
                except BaseException:
                    give(compartment)
                    raise
        try:
            result = fn(*args, **kwargs) if kwargs else fn(*args)
        finally:
            # Bulkhead.release() without its over-release check: this call holds the slot it gives back.
            shared_permits.append(True)
            if waiters:  # read after the append, as Bulkhead.release() does
                with shared_lock:
                    grant_locked()
            permits = compartment.permits
            permits.append(True)
            if len(permits) == max_per_key and not compartment.listed:
                list_idle(compartment)
        if type(result) is CoroutineType:
            refuse_coroutine(result, bulkhead, fn)
        return result

    return sync_wrapper
