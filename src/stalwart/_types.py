"""Shared type aliases and the compilation of ``on=`` exception specifications into predicates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeAlias, cast

from ._exceptions import Rejected

__all__ = [
    "NEVER_HANDLED",
    "ExceptionPredicate",
    "ExceptionSpec",
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


def is_never_handled(exc: BaseException) -> bool:
    """True for cancellation and interpreter-exit exceptions (:data:`NEVER_HANDLED`)."""
    return isinstance(exc, NEVER_HANDLED)


def compile_exception_spec(spec: ExceptionSpec, *, parameter: str, exclude_rejected: bool = True) -> ExceptionPredicate:
    """Turn an ``on=`` specification into a predicate.

    Args:
        spec: an exception class, a tuple of classes, or a predicate ``(exc) -> bool``.
        parameter: the parameter's name, used in error messages.
        exclude_rejected: when true, :class:`~stalwart.Rejected` never matches (a local decision is not a
            failure of the dependency).

    Returns:
        A predicate that is false for :data:`NEVER_HANDLED` exceptions whatever ``spec`` says.

    Raises:
        TypeError: ``spec`` is none of the accepted forms (the message names ``parameter``).
    """
    if isinstance(spec, type) and issubclass(spec, BaseException):
        types: tuple[type[BaseException], ...] = (spec,)
    elif isinstance(spec, tuple):
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in spec):
            raise TypeError(f"{parameter} must be an exception type, a tuple of them, or a predicate")
        types = spec
    elif callable(spec):
        predicate = cast("ExceptionPredicate", spec)

        def matches_predicate(exc: BaseException) -> bool:
            if isinstance(exc, NEVER_HANDLED) or (exclude_rejected and isinstance(exc, Rejected)):
                return False
            return bool(predicate(exc))

        return matches_predicate
    else:
        raise TypeError(f"{parameter} must be an exception type, a tuple of them, or a predicate; got {spec!r}")

    excluded: tuple[type[BaseException], ...] = NEVER_HANDLED + ((Rejected,) if exclude_rejected else ())

    def matches_types(exc: BaseException) -> bool:
        return isinstance(exc, types) and not isinstance(exc, excluded)

    return matches_types
