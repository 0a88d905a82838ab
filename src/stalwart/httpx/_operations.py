"""Bulkheads per operation type: which operation a request belongs to, by method and path (pure).

The seed's ``ResilientServiceClient`` keeps separate bulkheads for reads (50), writes (20) and search (10), so a
flood of slow searches cannot take the slots that reads and writes need. An :class:`Operation` names such a
compartment, its limits, and the requests it covers (methods and/or path patterns); an :class:`OperationTable`
picks the operation of a request, first match wins. The transport keeps one bulkhead per operation (and origin)
and uses the selected one instead of the origin's single bulkhead (issue 6; wiring in the transport is separate).

Path patterns are shell-style globs matched against the whole URL path, case-sensitively (``fnmatch``): ``*``
matches any run of characters, ``/`` included (``"/search*"``, ``"*/search"``, ``"/v1/*/search"``), ``?`` one
character, ``[...]`` a set. A compiled ``re.Pattern`` is accepted too (``fullmatch``). Nothing here reads a clock,
sleeps or locks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Protocol

from stalwart._config import check_int, to_seconds_or_none

__all__ = ["SEED_OPERATIONS", "Operation", "OperationTable", "bulkhead_status"]


@dataclass(frozen=True, slots=True)
class Operation:
    """A kind of request with its own bulkhead.

    Attributes:
        name: the operation's name (``"reads"``); part of its bulkhead's registry name.
        max_concurrent: the bulkhead's slots, ``int >= 1``.
        methods: the HTTP methods covered (upper-cased); empty: any method.
        paths: glob patterns (or compiled regexes) one of which the URL path must match; empty: any path.
        max_queue: callers that may wait for a slot (default 100, the seed's).
        queue_timeout: the longest wait for a slot, seconds (default 30.0, the seed's; ``None``: no limit).

    Raises:
        TypeError: a field has the wrong type.
        ValueError: an empty name, a method that is not a token, or a limit out of range.
    """

    name: str
    max_concurrent: int
    methods: frozenset[str] = frozenset()
    paths: tuple[str | re.Pattern[str], ...] = ()
    max_queue: int = 100
    queue_timeout: float | None = 30.0
    _matchers: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        check_int(self.max_concurrent, "max_concurrent", minimum=1)
        check_int(self.max_queue, "max_queue", minimum=0)
        set_(self, "queue_timeout", to_seconds_or_none(self.queue_timeout, "queue_timeout", allow_inf=True))
        set_(self, "methods", _methods(self.methods))
        paths, matchers = _patterns(self.paths)
        set_(self, "paths", paths)
        set_(self, "_matchers", matchers)

    def covers(self, method: str, path: str) -> bool:
        """Whether a request ``method path`` (method upper-case) belongs to this operation."""
        if self.methods and method not in self.methods:
            return False
        if not self._matchers:
            return True
        return any(matcher.fullmatch(path) is not None for matcher in self._matchers)


def _methods(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"methods must be a collection of method names, got {value!r}")
    methods = set()
    for method in value:
        if not isinstance(method, str) or not method.isascii() or not method.isalpha():
            raise ValueError(f"methods must contain HTTP method names, got {method!r}")
        methods.add(method.upper())
    return frozenset(methods)


def _patterns(
    value: Iterable[str | re.Pattern[str]],
) -> tuple[tuple[str | re.Pattern[str], ...], tuple[re.Pattern[str], ...]]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"paths must be a collection of glob patterns, got {value!r}")
    paths = tuple(value)
    matchers = []
    for pattern in paths:
        if isinstance(pattern, re.Pattern):
            matchers.append(pattern)
        elif isinstance(pattern, str) and pattern:
            matchers.append(re.compile(translate(pattern)))
        else:
            raise TypeError(f"paths must contain glob patterns (str) or compiled regexes, got {pattern!r}")
    return paths, tuple(matchers)


SEED_OPERATIONS: tuple[Operation, ...] = (
    Operation("search", 10, paths=("*/search", "*/search/*")),
    Operation("writes", 20, methods=frozenset({"POST", "PUT", "PATCH", "DELETE"})),
    Operation("reads", 50, methods=frozenset({"GET", "HEAD", "OPTIONS"})),
)
"""The seed's split: search 10 (any method, a path with a ``search`` segment), writes 20, reads 50; in that order,
so a ``GET .../search`` is a search."""


class OperationTable:
    """The operations of a client, in order: :meth:`select` returns the first that covers a request.

    Args:
        operations: the operations (names must be unique).

    Raises:
        TypeError: an item is not an :class:`Operation`.
        ValueError: two operations share a name.
    """

    __slots__ = ("_operations",)

    def __init__(self, operations: Iterable[Operation]) -> None:
        items = tuple(operations)
        seen: set[str] = set()
        for operation in items:
            if not isinstance(operation, Operation):
                raise TypeError(f"operations must be Operation instances, got {operation!r}")
            if operation.name in seen:
                raise ValueError(f"operation names must be unique, {operation.name!r} appears twice")
            seen.add(operation.name)
        self._operations = items

    @property
    def operations(self) -> tuple[Operation, ...]:
        """The operations, in matching order."""
        return self._operations

    def select(self, method: str, path: str) -> Operation | None:
        """The first operation covering ``method path``, or ``None`` (the request uses the origin's bulkhead).

        Args:
            method: the request method (case-insensitive).
            path: the URL path (``request.url.path``), without the query.
        """
        method = method.upper()
        for operation in self._operations:
            if operation.covers(method, path):
                return operation
        return None


class _Stats(Protocol):
    active: int
    queued: int
    available: int


class _HasStatistics(Protocol):
    def statistics(self) -> _Stats: ...


def bulkhead_status(
    bulkheads: Mapping[str, _HasStatistics] | Sequence[tuple[str, _HasStatistics]],
) -> dict[str, dict[str, int]]:
    """The seed's ``get_status()``: ``{name: {"active", "queued", "available"}}`` (the ``/health/bulkheads`` shape).

    Args:
        bulkheads: ``Bulkhead`` or ``KeyedBulkhead`` instances by name (a mapping or ``(name, bulkhead)`` pairs).
    """
    pairs = bulkheads.items() if isinstance(bulkheads, Mapping) else bulkheads
    status: dict[str, dict[str, int]] = {}
    for name, bulkhead in pairs:
        stats = bulkhead.statistics()
        status[name] = {"active": stats.active, "queued": stats.queued, "available": stats.available}
    return status
