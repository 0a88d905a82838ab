"""The demo's summary math (pure): percentiles, counts, retries and the JSON document."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart.cli.demo._summary import (
    DemoResult,
    Outcome,
    SideSummary,
    Transition,
    demo_document,
    percentile,
    retries_from_attempts,
    summarize,
)

SIDE_KEYS = [
    "requests",
    "succeeded",
    "fallback",
    "failed",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "retries",
    "upstream_calls_during_outage",
    "answered_within_1s",  # after the pinned keys
]


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        ([1.0], 50, 1.0),
        ([1.0], 99, 1.0),
        ([1.0, 2.0], 50, 1.0),
        ([1.0, 2.0], 51, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 75, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 1001)], 99, 990.0),
        ([float(i) for i in range(1, 1001)], 0.01, 1.0),
    ],
)
def test_percentile_nearest_rank(values: list[float], percent: float, expected: float) -> None:
    assert percentile(values, percent) == expected


@pytest.mark.parametrize(("values", "percent"), [([], 50), ([1.0], 0), ([1.0], 101), ([1.0], -5)])
def test_percentile_rejects(values: list[float], percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        percentile(values, percent)


@given(st.lists(st.floats(0.0, 1e6), min_size=1, max_size=200))
def test_percentiles_are_ordered_members(values: list[float]) -> None:
    values.sort()
    p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
    assert values[0] <= p50 <= p95 <= p99 <= values[-1]
    assert {p50, p95, p99} <= set(values)


@pytest.mark.parametrize(
    ("attempts", "retries"),
    [({}, 0), ({"/r/1": 1}, 0), ({"/r/1": 3, "/r/2": 1, "/r/3": 2}, 3), ({"/r/1": 0}, 0)],
)
def test_retries_from_attempts(attempts: dict[str, int], retries: int) -> None:
    assert retries_from_attempts(attempts) == retries


def test_summarize_counts_and_percentiles_in_ms() -> None:
    outcomes = [Outcome("ok", i / 1000) for i in range(1, 98)]  # 1..97 ms
    outcomes += [Outcome("fallback", 0.5), Outcome("failed", 1.0), Outcome("failed", 2.0)]
    summary = summarize(outcomes, retries=7, upstream_calls_during_outage=12)
    assert summary == SideSummary(
        requests=100,
        succeeded=97,
        fallback=1,
        failed=2,
        p50_ms=50.0,
        p95_ms=95.0,
        p99_ms=1000.0,
        retries=7,
        upstream_calls_during_outage=12,
        answered_within_1s=98,  # the successes and the fallback; a failure never counts, however fast
    )
    assert summary.answered == 98


@pytest.mark.parametrize(
    ("kind", "latency", "counted"),
    [
        ("ok", 1.0, True),
        ("ok", 1.0001, False),
        ("fallback", 0.0, True),
        ("fallback", 3.0, False),
        ("failed", 0.1, False),
    ],
)
def test_answered_within_1s(kind: str, latency: float, counted: bool) -> None:
    summary = summarize([Outcome(kind, latency)], retries=0, upstream_calls_during_outage=0)  # type: ignore[arg-type]
    assert summary.answered_within_1s == int(counted)


def test_summarize_nothing() -> None:
    summary = summarize([], retries=0, upstream_calls_during_outage=0)
    assert summary.as_dict() == dict.fromkeys(SIDE_KEYS, 0)


def test_summarize_rounds_to_tenth_of_ms() -> None:
    summary = summarize([Outcome("ok", 0.0123456)], retries=0, upstream_calls_during_outage=0)
    assert summary.p50_ms == 12.3


@given(st.lists(st.tuples(st.sampled_from(["ok", "fallback", "failed"]), st.floats(0.0, 100.0)), max_size=100))
def test_summarize_counts_add_up(raw: list[tuple[str, float]]) -> None:
    summary = summarize([Outcome(k, lat) for k, lat in raw], retries=0, upstream_calls_during_outage=0)  # type: ignore[arg-type]
    assert summary.succeeded + summary.fallback + summary.failed == summary.requests == len(raw)
    assert summary.p50_ms <= summary.p95_ms <= summary.p99_ms


def test_demo_document_shape() -> None:
    side = summarize([Outcome("ok", 0.01)], retries=0, upstream_calls_during_outage=3)
    doc = demo_document(side, side, [Transition(4.0125, "closed", "open"), Transition(5.1, "open", "half_open")])
    assert list(doc) == ["plain", "resilient", "breaker_transitions"]
    assert list(doc["plain"]) == SIDE_KEYS
    assert list(doc["resilient"]) == SIDE_KEYS
    assert doc["breaker_transitions"] == [
        {"at_s": 4.0125, "from": "closed", "to": "open"},
        {"at_s": 5.1, "from": "open", "to": "half_open"},
    ]
    assert json.loads(json.dumps(doc)) == doc


def test_demo_result_document_is_the_demo_document() -> None:
    side = summarize([Outcome("failed", 0.2)], retries=2, upstream_calls_during_outage=1)
    result = DemoResult(plain=side, resilient=side, transitions=(Transition(1.0, "closed", "open"),))
    assert result.document() == demo_document(side, side, result.transitions)
