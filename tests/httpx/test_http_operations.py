"""Per-operation bulkhead selection (pure): the seed's reads/writes/search split, patterns, validation, status."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stalwart as sw
from stalwart.httpx._operations import SEED_OPERATIONS, Operation, OperationTable, bulkhead_status

SEED = OperationTable(SEED_OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/users/42", "reads"),
        ("head", "/users/42", "reads"),
        ("OPTIONS", "/", "reads"),
        ("POST", "/orders", "writes"),
        ("PUT", "/orders/7", "writes"),
        ("PATCH", "/orders/7", "writes"),
        ("DELETE", "/orders/7", "writes"),
        ("GET", "/search", "search"),
        ("GET", "/api/v1/search", "search"),
        ("POST", "/products/search", "search"),  # search before writes
        ("GET", "/search/suggestions", "search"),
        ("GET", "/searches", "reads"),  # not a search segment
        ("GET", "/research", "reads"),
        ("TRACE", "/x", None),  # no operation: the origin's own bulkhead
    ],
)
def test_the_seeds_split(method: str, path: str, expected: str | None) -> None:
    selected = SEED.select(method, path)
    assert (selected.name if selected is not None else None) == expected


def test_the_seeds_limits() -> None:
    limits = {op.name: (op.max_concurrent, op.max_queue, op.queue_timeout) for op in SEED.operations}
    assert limits == {"search": (10, 100, 30.0), "writes": (20, 100, 30.0), "reads": (50, 100, 30.0)}


def test_globs_and_regexes() -> None:
    reports = Operation("reports", 2, paths=("/v1/*/reports", re.compile(r"/v2/reports/\d+")))
    assert reports.covers("GET", "/v1/acme/reports")
    assert reports.covers("POST", "/v1/a/b/reports")  # * crosses slashes
    assert reports.covers("GET", "/v2/reports/12")
    assert not reports.covers("GET", "/v2/reports/latest")
    assert not reports.covers("GET", "/V1/acme/reports")  # case-sensitive
    anything = Operation("all", 5)
    assert anything.covers("GET", "/")
    assert anything.covers("BREW", "/pot")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "", "max_concurrent": 1}, ValueError, "name"),
        ({"name": "x", "max_concurrent": 0}, ValueError, "max_concurrent"),
        ({"name": "x", "max_concurrent": 1, "max_queue": -1}, ValueError, "max_queue"),
        ({"name": "x", "max_concurrent": 1, "queue_timeout": -1.0}, ValueError, "queue_timeout"),
        ({"name": "x", "max_concurrent": 1, "methods": "GET"}, TypeError, "methods"),
        ({"name": "x", "max_concurrent": 1, "methods": ["G-T"]}, ValueError, "methods"),
        ({"name": "x", "max_concurrent": 1, "paths": "/search"}, TypeError, "paths"),
        ({"name": "x", "max_concurrent": 1, "paths": [""]}, TypeError, "paths"),
        ({"name": "x", "max_concurrent": 1, "paths": [3]}, TypeError, "paths"),
    ],
)
def test_invalid_operations(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Operation(**kwargs)  # type: ignore[arg-type]


def test_methods_are_normalised_and_tables_validated() -> None:
    assert Operation("w", 1, methods=["post", "Put"]).methods == frozenset({"POST", "PUT"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        OperationTable([Operation("a", 1), Operation("a", 2)])
    with pytest.raises(TypeError, match="Operation"):
        OperationTable(["reads"])  # type: ignore[list-item]


operations = st.lists(
    st.builds(
        Operation,
        name=st.text("abcdefgh", min_size=1, max_size=4),
        max_concurrent=st.integers(1, 5),
        methods=st.frozensets(st.sampled_from(["GET", "POST", "PUT"]), max_size=2),
        paths=st.lists(st.sampled_from(["/a*", "*/b", "/c/*", "*"]), max_size=2).map(tuple),
    ),
    max_size=5,
    unique_by=lambda op: op.name,
)


@given(operations, st.sampled_from(["GET", "post", "PUT", "DELETE"]), st.sampled_from(["/a", "/a/b", "/c/d", "/x"]))
def test_select_is_the_first_covering_operation(ops: list[Operation], method: str, path: str) -> None:
    covering = [op for op in ops if op.covers(method.upper(), path)]
    assert OperationTable(ops).select(method, path) == (covering[0] if covering else None)


async def test_bulkhead_status_is_the_health_shape() -> None:
    reads = sw.Bulkhead("reads", max_concurrent=50)
    users = sw.KeyedBulkhead("users", max_per_key=2, max_concurrent=4)
    await reads.acquire()
    await users.acquire("ann")
    try:
        expected = {
            "reads": {"active": 1, "queued": 0, "available": 49},
            "users": {"active": 1, "queued": 0, "available": 3},
        }
        assert bulkhead_status({"reads": reads, "users": users}) == expected
        assert bulkhead_status([("reads", reads), ("users", users)]) == expected
    finally:
        reads.release()
        users.release("ann")
