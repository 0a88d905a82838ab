"""Turning the demo's raw outcomes into the numbers it reports (pure).

Per side (``plain`` and ``resilient``) the demo reports a :class:`SideSummary`; the breaker's state changes are
:class:`Transition` objects. :func:`demo_document` builds the one JSON object ``stalwart demo --json`` prints::

    {"plain": {...}, "resilient": {...}, "breaker_transitions": [{"at_s": 4.02, "from": "closed", "to": "open"}],
     "retry_budget": {...}}

Each side has the keys ``requests``, ``succeeded``, ``fallback``, ``failed``, ``p50_ms``, ``p95_ms``, ``p99_ms``,
``retries`` and ``upstream_calls_during_outage`` (pinned by issue 2), then ``answered_within_1s``. ``retry_budget``
(present when the run measured it) is :meth:`BudgetEffect.as_dict`: the resilient side's load during the outage
against the load without retries, and what the retry budget granted and refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "ANSWER_WITHIN",
    "BUDGET_LIMIT",
    "BudgetEffect",
    "DemoResult",
    "Kind",
    "Outcome",
    "SideSummary",
    "Transition",
    "demo_document",
    "due_between",
    "percentile",
    "retries_from_attempts",
    "summarize",
]

ANSWER_WITHIN = 1.0
"""Seconds within which an answer counts as timely (``answered_within_1s``): a user would likely have given up on
a slower one, and a success that took seconds is no better than a fast fallback."""

Kind: TypeAlias = Literal["ok", "fallback", "failed"]
"""How a request ended: answered by the upstream (2xx), answered by the fallback, or failed."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request's end.

    Attributes:
        kind: ``"ok"``, ``"fallback"`` or ``"failed"``.
        latency: seconds from the moment the request was due to its end (queueing included).
    """

    kind: Kind
    latency: float


@dataclass(frozen=True, slots=True)
class SideSummary:
    """What one side of the demo achieved.

    Attributes:
        requests: requests in the workload.
        succeeded: answered 2xx by the upstream.
        fallback: answered by the fallback (the resilient side only).
        failed: neither; ``succeeded + fallback + failed == requests``.
        p50_ms, p95_ms, p99_ms: latency percentiles over all requests, milliseconds (nearest rank).
        retries: attempts sent beyond the first, summed over requests.
        upstream_calls_during_outage: calls the upstream received while in its outage phase.
        answered_within_1s: requests answered (succeeded or fallback) at most :data:`ANSWER_WITHIN` seconds after
            they were due.
    """

    requests: int
    succeeded: int
    fallback: int
    failed: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    retries: int
    upstream_calls_during_outage: int
    answered_within_1s: int = 0

    def as_dict(self) -> dict[str, int | float]:
        """The JSON shape (keys in the documented order: the pinned ones, then ``answered_within_1s``)."""
        return {
            "requests": self.requests,
            "succeeded": self.succeeded,
            "fallback": self.fallback,
            "failed": self.failed,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "retries": self.retries,
            "upstream_calls_during_outage": self.upstream_calls_during_outage,
            "answered_within_1s": self.answered_within_1s,
        }

    @property
    def answered(self) -> int:
        """Requests that got an answer: ``succeeded + fallback``."""
        return self.succeeded + self.fallback


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker state change.

    Attributes:
        at_s: seconds since the start of the run.
        from_state: the previous state (``"closed"``, ``"open"``, ``"half_open"``, ...).
        to_state: the new state.
    """

    at_s: float
    from_state: str
    to_state: str

    def as_dict(self) -> dict[str, float | str]:
        """The JSON shape: ``{"at_s": ..., "from": ..., "to": ...}``."""
        return {"at_s": self.at_s, "from": self.from_state, "to": self.to_state}


BUDGET_LIMIT = 1.2
"""The most load the resilient side may put on the upstream during the outage, as a multiple of the load without
retries (issue 4: a retry budget must not let retries multiply an outage)."""


@dataclass(frozen=True, slots=True)
class BudgetEffect:
    """What the resilient side's retry budget did, and the outage load it allowed.

    Attributes:
        no_retry_load: calls a client sending each request once would make during the outage: the requests due
            while it lasts (from the workload's schedule).
        outage_calls: calls the resilient side's upstream received during the outage.
        outage_retries: how many of those were retries (their ``Stalwart-Attempt`` header is above 1).
        blip_retries: retries the upstream received during the blip.
        blip_refused: retries the budget refused during the blip (0: the blip was fully retried).
        granted: retries the budget granted over the run.
        refused: retries the budget refused over the run.
        limit: the largest acceptable ``ratio`` (default :data:`BUDGET_LIMIT`).
    """

    no_retry_load: int
    outage_calls: int
    outage_retries: int
    blip_retries: int
    blip_refused: int
    granted: int
    refused: int
    limit: float = BUDGET_LIMIT

    @property
    def ratio(self) -> float:
        """``outage_calls / no_retry_load`` (0.0 when no request was due during the outage)."""
        return self.outage_calls / self.no_retry_load if self.no_retry_load else 0.0

    @property
    def within_limit(self) -> bool:
        """Whether the outage load stayed at most ``limit`` times the load without retries."""
        return self.ratio <= self.limit

    def as_dict(self) -> dict[str, int | float | bool]:
        """The JSON shape (``ratio`` rounded to 3 decimals)."""
        return {
            "no_retry_load_during_outage": self.no_retry_load,
            "upstream_calls_during_outage": self.outage_calls,
            "retries_during_outage": self.outage_retries,
            "outage_load_ratio": round(self.ratio, 3),
            "limit": self.limit,
            "within_limit": self.within_limit,
            "blip_retries": self.blip_retries,
            "blip_retries_refused": self.blip_refused,
            "retries_granted": self.granted,
            "retries_refused": self.refused,
        }


def due_between(offsets: Iterable[float], start: float, end: float) -> int:
    """How many requests are due in ``[start, end)`` (offsets in seconds since the start of the run)."""
    return sum(1 for offset in offsets if start <= offset < end)


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``percent`` % of the values at or below it.

    Args:
        sorted_values: values in ascending order.
        percent: in (0, 100].

    Raises:
        ValueError: no values, or ``percent`` outside (0, 100].
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent!r}")
    rank = math.ceil(percent / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def retries_from_attempts(attempts: Mapping[str, int]) -> int:
    """Retries sent, from the attempts counted per request: ``sum(max(0, n - 1))``."""
    return sum(max(0, n - 1) for n in attempts.values())


def summarize(outcomes: Iterable[Outcome], *, retries: int, upstream_calls_during_outage: int) -> SideSummary:
    """Count the outcomes and take the latency percentiles (milliseconds, rounded to 0.1 ms).

    With no outcomes every count and percentile is 0.
    """
    counts = {"ok": 0, "fallback": 0, "failed": 0}
    latencies = []
    timely = 0
    for outcome in outcomes:
        counts[outcome.kind] += 1
        latencies.append(outcome.latency)
        if outcome.kind != "failed" and outcome.latency <= ANSWER_WITHIN:
            timely += 1
    latencies.sort()

    def ms(percent: float) -> float:
        return round(percentile(latencies, percent) * 1000, 1) if latencies else 0.0

    return SideSummary(
        requests=len(latencies),
        succeeded=counts["ok"],
        fallback=counts["fallback"],
        failed=counts["failed"],
        p50_ms=ms(50),
        p95_ms=ms(95),
        p99_ms=ms(99),
        retries=retries,
        upstream_calls_during_outage=upstream_calls_during_outage,
        answered_within_1s=timely,
    )


def demo_document(
    plain: SideSummary,
    resilient: SideSummary,
    transitions: Iterable[Transition],
    budget: BudgetEffect | None = None,
) -> dict[str, Any]:
    """The object ``stalwart demo --json`` prints (``retry_budget`` only when ``budget`` is given)."""
    document: dict[str, Any] = {
        "plain": plain.as_dict(),
        "resilient": resilient.as_dict(),
        "breaker_transitions": [t.as_dict() for t in transitions],
    }
    if budget is not None:
        document["retry_budget"] = budget.as_dict()
    return document


@dataclass(frozen=True, slots=True)
class DemoResult:
    """Everything one run of a demo scenario measured, for the report and the JSON document.

    Attributes:
        plain: the side without stalwart.
        resilient: the side with stalwart.
        transitions: the resilient side's breaker state changes, in order.
        phases: ``(name, description, start_s, end_s)`` per phase of the upstream's schedule.
        calls: upstream calls per side (``"plain"``, ``"resilient"``) per phase name.
        slow: per side, requests that took longer than one second (report only; not in the JSON document).
        settings: ``(label, value)`` pairs describing how the resilient side is configured.
        retries: per phase name, the retries the resilient side's upstream received.
        refused: per phase name, the retries the resilient side's budget refused.
        budget: the retry budget's effect (``None`` when not measured).
        bulkhead_wait: the longest a request of the stalwart side waits for a bulkhead slot before the fallback
            answers it, seconds (``None``: not shown), stated under the comparison table.
    """

    plain: SideSummary
    resilient: SideSummary
    transitions: tuple[Transition, ...]
    phases: tuple[tuple[str, str, float, float], ...] = ()
    calls: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    slow: Mapping[str, int] = field(default_factory=dict)
    settings: tuple[tuple[str, str], ...] = ()
    retries: Mapping[str, int] = field(default_factory=dict)
    refused: Mapping[str, int] = field(default_factory=dict)
    budget: BudgetEffect | None = None
    bulkhead_wait: float | None = None

    def document(self) -> dict[str, Any]:
        """The object ``stalwart demo --json`` prints (see :func:`demo_document`)."""
        return demo_document(self.plain, self.resilient, self.transitions, self.budget)
