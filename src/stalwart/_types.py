"""Shared type aliases and the compilation of ``on=`` exception specifications into predicates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeAlias

from ._exceptions import Rejected

__all__ = [
    "NEVER_HANDLED",
    "ExceptionPredicate",
    "ExceptionSpec",
    "MisuseError",
    "compile_exception_spec",
    "is_never_handled",
]

ExceptionPredicate: TypeAlias = Callable[[BaseException], bool]
ExceptionSpec: TypeAlias = type[BaseException] | tuple[type[BaseException], ...] | ExceptionPredicate
"""An exception type, a tuple of types, or a predicate ``(exc) -> bool``."""

NEVER_HANDLED: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)
"""Exceptions no policy ever retries, counts as a failure, or swallows."""


class MisuseError(TypeError):
    """A sync/async mix-up refused by a policy's entry point: a sync path given a coroutine, an async path given a
    result that cannot be awaited.

    A ``TypeError`` for the caller; no ``on=`` specification matches it (:func:`compile_exception_spec`), so an outer
    ``Retry`` never calls the function again (its kind cannot change), a ``Fallback`` never answers for a call that
    was never made, and a breaker never counts it as a failure of the dependency.
    """


def is_never_handled(exc: BaseException) -> bool:
    """True for cancellation and interpreter-exit exceptions (:data:`NEVER_HANDLED`), also inside a group.

    A ``BaseExceptionGroup`` holding one of them (a task group, anyio or trio code that wraps a ``CancelledError``
    or ``KeyboardInterrupt`` with other errors) is never handled either: retrying or answering it would swallow the
    cancellation or the interrupt it carries.
    """
    return isinstance(exc, NEVER_HANDLED) or (
        isinstance(exc, BaseExceptionGroup) and exc.subgroup(NEVER_HANDLED) is not None
    )


def compile_exception_spec(spec: ExceptionSpec, *, parameter: str, exclude_rejected: bool = True) -> ExceptionPredicate:
    """Turn an ``on=`` specification into a predicate.

    Args:
        spec: an exception class, a tuple of classes, or a predicate ``(exc) -> bool``.
        parameter: the parameter's name, used in error messages.
        exclude_rejected: when true, :class:`~stalwart.Rejected` never matches (a local decision is not a
            failure of the dependency).

    Returns:
        A predicate that is false for :data:`NEVER_HANDLED` exceptions and :class:`MisuseError` whatever ``spec``
        says, and for exception groups holding one of the former (:func:`is_never_handled`).

    Raises:
        TypeError: ``spec`` is none of the accepted forms, or a class that is not an exception (the message names
            ``parameter``).
    """
    excluded: tuple[type[BaseException], ...] = (MisuseError, Rejected) if exclude_rejected else (MisuseError,)
    if isinstance(spec, type):
        if not issubclass(spec, BaseException):  # a class is callable, but calling it is no test of an exception
            raise TypeError(f"{parameter} must be an exception type, a tuple of them, or a predicate; got {spec!r}")
        types: tuple[type[BaseException], ...] = (spec,)
    elif isinstance(spec, tuple):
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in spec):
            raise TypeError(f"{parameter} must be an exception type, a tuple of them, or a predicate")
        types = spec
    elif callable(spec):
        predicate: ExceptionPredicate = spec

        def matches_predicate(exc: BaseException) -> bool:
            if is_never_handled(exc) or isinstance(exc, excluded):
                return False
            return bool(predicate(exc))

        return matches_predicate
    else:
        raise TypeError(f"{parameter} must be an exception type, a tuple of them, or a predicate; got {spec!r}")

    if not any(issubclass(BaseExceptionGroup, t) for t in types):  # no group can match: skip the group check
        never = (*NEVER_HANDLED, *excluded)

        def matches_types(exc: BaseException) -> bool:
            return isinstance(exc, types) and not isinstance(exc, never)

        return matches_types

    def matches_types_or_group(exc: BaseException) -> bool:
        return isinstance(exc, types) and not isinstance(exc, excluded) and not is_never_handled(exc)

    return matches_types_or_group
