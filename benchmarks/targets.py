"""The performance targets, as the issues state them, evaluated on one run's results.

One :class:`Target` per criterion an issue states, per mode (sync / async) where the issue asks for both, each naming
its source: "issue 2" is the foundation issue (its section "Tests and benchmarks"), issues 3 (circuit breaker),
4 (retry) and 6 (deadlines, adaptive timeouts, keyed bulkheads) have a "Performance" section or list. Issue 5's
targets (idempotency middleware per store, on loopback) are judged by ``bench_idempotency.py``, which runs real
servers and stores; its in-process rows in ``run.py`` are shown, not judged.

The thresholds are the issues' own numbers, in one place below. How each is read:

* "cheaper than X" / "under N x X" / "within N x X" / "no dearer than X": the median over rounds of the per-round
  ratio of the two rows (:func:`_harness.paired_ratio`), with ``<`` for "cheaper"/"under", ``<=`` for "within" and
  "no dearer". "> 10x cheaper than X": that ratio below 1/10.
* "adds under N µs": an absolute difference, because that is what the issue states; it is the median over rounds of
  the per-round difference between the two rows (:func:`_harness.paired_difference`), never two medians from
  different moments. An absolute amount depends on the machine's speed and load in a way a ratio does not, so the
  ratio is reported beside it.
* Loopback throughput: the ratio of the two clients' median requests/s over interleaved rounds, as issue 2 words it;
  the median of per-round ratios and the TCP connections opened are reported beside it.

Comparisons the issues give as context only (e.g. httpx-retries' 3.8 µs, tenacity around ``client.get``) are rows
of the tables, not targets.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import bench_breaker as br
import bench_breaker_redis as brr
import bench_bulkhead as bh
import bench_http as ht
import bench_issue6 as i6
import bench_pipeline as pl
import bench_retry as rt
import bench_timeout as to
from _common import BARE_ASYNC, BARE_SYNC
from _harness import Result, paired_difference, paired_ratio

__all__ = ["TARGETS", "Outcome", "Target"]

# TARGET THRESHOLDS, in the issues' words --------------------------------------------------------------------------
# issue 2 (foundation), "Tests and benchmarks"
RETRY_VS_TENACITY = 10.0  # Retry on the success path "> 10x cheaper than tenacity"
OPEN_VS_RAISE = 2.0  # issues 2 and 3: an OPEN breaker "rejects in under 2x the cost of a bare raise"
TIMEOUT_VS_ASYNCIO = 1.0  # "Timeout no dearer than asyncio.timeout"
BULKHEAD_VS_SEMAPHORE = 1.3  # "Bulkhead within 1.3x of a bare asyncio.Semaphore"
PIPELINE_VS_PEERS = 6.0  # the standard pipeline "under a sixth of tenacity + circuitbreaker + asyncio.timeout"
HTTP_ADDED_US = 5.0  # "AsyncResilientTransport adds under 5 µs per request over plain httpx" (MockTransport)
THROUGHPUT_VS_PLAIN = 0.95  # at concurrency 50 on loopback "at least 95 % of plain httpx's requests/s"
# issue 3, "Performance"
REDIS_VS_LOCAL = brr.REDIS_VS_LOCAL  # the Redis-backed breaker, CLOSED, "within 3x of the local breaker"
# issue 4, "Performance"
BUDGET_SHARE = 0.10  # "budget bookkeeping adds less than 10 % to the success-path overhead"
# issue 6, "Proof"
RECORD_US = 2.0  # "AdaptiveTimeout.record() under 2 µs"
KEYED_VS_BULKHEAD = 1.5  # "KeyedBulkhead within 1.5x of Bulkhead per call"
MIDDLEWARE_HEADER_US = 2.0  # "DeadlineMiddleware adds no more than one Timeout plus 2 µs of header handling"

ISSUE_HTTPX_US = 139.0  # issue 2: httpx's own cost per request over MockTransport when the issue was written

Results = dict[str, Result]
Check = Callable[[Results, Any], tuple[bool | None, str]]


@dataclass(frozen=True)
class Outcome:
    """A target's verdict: ``PASS``, ``FAIL`` or ``SKIP`` (a row it needs is not available), and the numbers."""

    target: Target
    status: str
    detail: str


@dataclass(frozen=True)
class Target:
    """One target: its text, its source, a check returning (passed, or None to skip; detail), the rows it is about.

    ``rows`` name the table rows the target reads (``run.py --only`` shows the targets whose rows ran); the loopback
    targets read the throughput result instead and have none.
    """

    text: str
    source: str
    check: Check
    rows: tuple[str, ...] = ()

    def evaluate(self, results: Results, throughput: Any) -> Outcome:
        try:
            ok, detail = self.check(results, throughput)
        except KeyError as exc:
            return Outcome(self, "SKIP", f"not available: {exc.args[0]}")
        if ok is None:
            return Outcome(self, "SKIP", detail)
        return Outcome(self, "PASS" if ok else "FAIL", detail)


def _ns(results: Results, name: str) -> float:
    if name not in results:
        raise KeyError(name)
    return results[name].median


def _us(ns: float) -> str:
    return f"{ns / 1000:.2f} µs"


def _short(name: str) -> str:
    return name.rsplit(" (", 1)[0]


def _ratio(results: Results, a: str, b: str) -> float:
    _ns(results, a)  # KeyError (the target is skipped) when a row is not available
    _ns(results, b)
    return paired_ratio(results[a], results[b])


# --- checks ---------------------------------------------------------------------------------------------------------


def cheaper_than(subject: str, peers: Sequence[str], factor: float = 1.0) -> Check:
    """``subject`` costs less than ``1/factor`` of every peer per call: per-round ratio ``subject/peer < 1/factor``.

    ``factor=1``: "cheaper than"; ``factor=10``: "more than 10x cheaper than"; ``factor=6``: "under a sixth of".
    Every peer must be measured (a missing peer row skips the target).
    """

    def check(results: Results, _: Any) -> tuple[bool | None, str]:
        mine = _ns(results, subject)
        ratios = {p: _ratio(results, subject, p) for p in peers}
        parts = [f"{_short(p)} {_us(_ns(results, p))} (x{ratios[p]:.3f})" for p in peers]
        limit = "< x1" if factor == 1 else f"< x{1 / factor:.3f}, i.e. {factor:g}x cheaper"
        detail = f"stalwart {_us(mine)} vs " + ", ".join(parts) + f" (limit {limit})"
        return all(r < 1.0 / factor for r in ratios.values()), detail

    return check


def ratio_at_most(subject: str, reference: str, factor: float, *, strict: bool) -> Check:
    """``subject / reference`` (per-round ratio) ``< factor`` (``strict``, "under") or ``<= factor`` ("within")."""

    def check(results: Results, _: Any) -> tuple[bool | None, str]:
        ratio = _ratio(results, subject, reference)
        ok = ratio < factor if strict else ratio <= factor
        op = "<" if strict else "<="
        detail = (
            f"{_us(_ns(results, subject))} vs {_us(_ns(results, reference))}: x{ratio:.2f} (limit {op} x{factor:g})"
        )
        return ok, detail

    return check


def added_under(subject: str, baseline: str, micros: float) -> Check:
    """``subject`` adds under ``micros`` µs per call over ``baseline`` (median of per-round differences)."""

    def check(results: Results, _: Any) -> tuple[bool | None, str]:
        _ns(results, subject)
        _ns(results, baseline)
        added = paired_difference(results[subject], results[baseline])
        ratio = paired_ratio(results[subject], results[baseline])
        return added < micros * 1000, f"{_us(added)} added (x{ratio:.2f} of the baseline; limit < {micros:g} µs)"

    return check


def transport_added(results: Results, _: Any) -> tuple[bool | None, str]:
    """Issue 2: the transport adds under 5 µs per request over plain httpx, over the same ``MockTransport``.

    The issue states an absolute amount, so the target is the difference (median of per-round differences), not a
    ratio; the ratio is reported too, and so is the share the 5 µs was of plain httpx's cost when the issue was
    written (139 µs) against its share of plain httpx's cost in this run.
    """
    mine, plain = _ns(results, ht.STALWART_ASYNC), _ns(results, ht.PLAIN_ASYNC)
    added = paired_difference(results[ht.STALWART_ASYNC], results[ht.PLAIN_ASYNC])
    ratio = paired_ratio(results[ht.STALWART_ASYNC], results[ht.PLAIN_ASYNC])
    detail = (
        f"{_us(added)} added: {_us(mine)} vs plain httpx {_us(plain)}, x{ratio:.3f} (limit < {HTTP_ADDED_US:g} µs, "
        f"{HTTP_ADDED_US / ISSUE_HTTPX_US:.1%} of httpx's {ISSUE_HTTPX_US:g} µs in the issue; "
        f"{HTTP_ADDED_US * 1000 / plain:.1%} of plain httpx here)"
    )
    if ht.RETRIES_ASYNC in results:
        retries = paired_difference(results[ht.RETRIES_ASYNC], results[ht.PLAIN_ASYNC])
        detail += f"; httpx-retries adds {_us(retries)} in this run"
    return added < HTTP_ADDED_US * 1000, detail


def budget_share(with_budget: str, without: str, bare: str) -> Check:
    """Issue 4: the budget's cost is under 10 % of the success-path overhead (the Retry's cost over the bare call).

    The budget's cost is the median of per-round differences between the Retry with the budget and the same Retry
    without one; the overhead is the median of per-round differences between the Retry without a budget and the bare
    call; their quotient is judged (a quotient per round would blow up in a round where noise shrinks the overhead).
    """

    def check(results: Results, _: Any) -> tuple[bool | None, str]:
        for name in (with_budget, without, bare):
            _ns(results, name)
        added = paired_difference(results[with_budget], results[without])
        overhead = paired_difference(results[without], results[bare])
        if overhead <= 0:
            return None, f"Retry's overhead not measurable in this run ({overhead:.0f} ns)"
        share = added / overhead
        detail = (
            f"budget adds {added:.0f} ns to Retry's {overhead:.0f} ns overhead: {share:.1%} "
            f"(limit < {BUDGET_SHARE:.0%})"
        )
        return share < BUDGET_SHARE, detail

    return check


def middleware_overhead(results: Results, _: Any) -> tuple[bool | None, str]:
    """Issue 6: the middleware's cost over the bare app is at most the Timeout's cost over it plus 2 µs.

    ``(middleware - bare) - (timeout - bare) = middleware - timeout``: the median of per-round differences of the
    middleware row and the bare app under ``Timeout(10.0)``.
    """
    bare = _ns(results, i6.ASGI_BARE)
    middleware, timeout = _ns(results, i6.ASGI_DEADLINE), _ns(results, i6.ASGI_TIMEOUT)
    extra = paired_difference(results[i6.ASGI_DEADLINE], results[i6.ASGI_TIMEOUT])
    detail = (
        f"{_us(middleware - bare)} added vs Timeout's {_us(timeout - bare)}: {_us(extra)} more "
        f"(limit <= {MIDDLEWARE_HEADER_US:g} µs)"
    )
    return extra <= MIDDLEWARE_HEADER_US * 1000, detail


def fresh_exception(results: Results, _: Any) -> tuple[bool | None, str]:
    """Issues 2 and 3: every rejection raises a fresh exception (checked, not timed), in both modes."""
    verdicts = {mode: br.fresh_rejections(mode) for mode in ("sync", "async")}
    return all(ok for ok, _ in verdicts.values()), "; ".join(f"{m}: {d}" for m, (_, d) in verdicts.items())


def _throughput_pair(tp: Any, plain_name: str, mine_name: str) -> Any:
    if tp is None:
        return None
    plain, mine = tp.rows.get(plain_name), tp.rows.get(mine_name)
    if plain is None or mine is None or not plain.rps or not mine.rps:
        return None
    return plain, mine


def _by_regime(plain: Any, mine: Any, concurrency: int) -> str:
    """Each client's median requests/s over the rounds where httpcore's pool kept its connections (at most
    ``concurrency`` opened) and over those where it churned them (a new connection for most requests).

    With httpx's default limits (20 kept alive) the pool at concurrency 50 settles in one of two regimes per round,
    and the regimes differ in speed (the pool's assignment loop scans every connection per queued request); a
    round's regime is not chosen by the client's transport. Reported beside the judged medians, not judged."""
    parts = []
    for label, kept in (("pool kept", True), ("pool churned", False)):
        p = [r for r, c in zip(plain.rps, plain.connections, strict=True) if (c <= concurrency) is kept]
        m = [r for r, c in zip(mine.rps, mine.connections, strict=True) if (c <= concurrency) is kept]
        if p and m:
            parts.append(
                f"{label}: stalwart {statistics.median(m):,.0f} ({len(m)} rounds) vs plain "
                f"{statistics.median(p):,.0f} ({len(p)} rounds), x{statistics.median(m) / statistics.median(p):.3f}"
            )
    return "; by regime: " + "; ".join(parts) if parts else ""


def throughput(plain_name: str, mine_name: str) -> Check:
    """Issue 2: at concurrency 50 on loopback, stalwart keeps at least 95 % of plain httpx's requests/s.

    Judged as the issue words it: the ratio of the medians over interleaved rounds; no request may fail. The median
    of per-round ratios and the TCP connections each client opened per round are reported beside it.
    """

    def check(results: Results, tp: Any) -> tuple[bool | None, str]:
        pair = _throughput_pair(tp, plain_name, mine_name)
        if pair is None:
            return None, "throughput not measured" + (f" ({tp.error})" if tp is not None and tp.error else "")
        plain, mine = pair
        ratio = mine.median_rps / plain.median_rps
        per_round = statistics.median(m / p for m, p in zip(mine.rps, plain.rps, strict=True))
        errors = sum(mine.errors)
        detail = (
            f"medians {mine.median_rps:,.0f} vs {plain.median_rps:,.0f} req/s: x{ratio:.3f} "
            f"(limit >= x{THROUGHPUT_VS_PLAIN:g}; median per-round ratio x{per_round:.3f}); TCP connections per "
            f"round: stalwart {' '.join(map(str, mine.connections))}, plain {' '.join(map(str, plain.connections))}"
        )
        detail += _by_regime(plain, mine, tp.concurrency)
        if errors:
            detail += f"; {errors} failed requests"
        return ratio >= THROUGHPUT_VS_PLAIN and errors == 0, detail

    return check


# --- the targets ----------------------------------------------------------------------------------------------------

ISSUE2 = "issue 2 (foundation)"


def _issue2() -> list[Target]:
    out = [
        Target(
            "Retry success path (sync) cheaper than backoff, the fastest sync retry peer",
            ISSUE2,
            cheaper_than(rt.STALWART_SYNC, ("backoff (sync)",)),
            (rt.STALWART_SYNC, "backoff (sync)"),
        ),
        Target(
            "Retry success path (async) cheaper than backoff and hyx, the fastest retry peers",
            ISSUE2,
            cheaper_than(rt.STALWART_ASYNC, ("backoff (async)", "hyx retry (async)")),
            (rt.STALWART_ASYNC, "backoff (async)", "hyx retry (async)"),
        ),
    ]
    for mode, subject in (("sync", rt.STALWART_SYNC), ("async", rt.STALWART_ASYNC)):
        peer = f"tenacity ({mode})"
        out.append(
            Target(
                f"Retry success path ({mode}) more than {RETRY_VS_TENACITY:g}x cheaper than tenacity",
                ISSUE2,
                cheaper_than(subject, (peer,), RETRY_VS_TENACITY),
                (subject, peer),
            )
        )
    for mode, subject in (("sync", br.STALWART_SYNC), ("async", br.STALWART_ASYNC)):
        peer = f"circuitbreaker ({mode})"
        out.append(
            Target(
                f"CircuitBreaker CLOSED ({mode}, default consecutive model) cheaper than circuitbreaker, the fastest "
                "breaker peer",
                ISSUE2,
                cheaper_than(subject, (peer,)),
                (subject, peer),
            )
        )
    for mode, subject, raise_row in (
        ("sync", br.OPEN_STALWART_SYNC, br.RAISE_SYNC),
        ("async", br.OPEN_STALWART_ASYNC, br.RAISE_ASYNC),
    ):
        out.append(
            Target(
                f"CircuitBreaker OPEN rejection ({mode}) under {OPEN_VS_RAISE:g}x a bare raise of a fresh "
                "CircuitOpenError",
                f"{ISSUE2}; issue 3",
                ratio_at_most(subject, raise_row, OPEN_VS_RAISE, strict=True),
                (subject, raise_row),
            )
        )
    out += [
        Target(
            "CircuitBreaker OPEN: a fresh exception per rejection (sync and async; checked, not timed)",
            f"{ISSUE2}; issue 3",
            fresh_exception,
            (br.OPEN_STALWART_SYNC, br.OPEN_STALWART_ASYNC),
        ),
        Target(
            "Timeout (async) no dearer than asyncio.timeout",
            ISSUE2,
            ratio_at_most(to.STALWART_ASYNC, to.ASYNCIO_TIMEOUT, TIMEOUT_VS_ASYNCIO, strict=False),
            (to.STALWART_ASYNC, to.ASYNCIO_TIMEOUT),
        ),
        Target(
            f"Bulkhead (async) within {BULKHEAD_VS_SEMAPHORE:g}x of a bare asyncio.Semaphore",
            ISSUE2,
            ratio_at_most(bh.STALWART_ASYNC, bh.SEMAPHORE_ASYNC, BULKHEAD_VS_SEMAPHORE, strict=False),
            (bh.STALWART_ASYNC, bh.SEMAPHORE_ASYNC),
        ),
        Target(
            "Standard pipeline (async) cheaper than hyx's retry + breaker + timeout",
            ISSUE2,
            cheaper_than(pl.STALWART_ASYNC, (pl.HYX_ISSUE_ASYNC,)),
            (pl.STALWART_ASYNC, pl.HYX_ISSUE_ASYNC),
        ),
        Target(
            "Standard pipeline (async) under a sixth of tenacity + circuitbreaker + asyncio.timeout",
            ISSUE2,
            cheaper_than(pl.STALWART_ASYNC, (pl.PEERS_ISSUE_ASYNC,), PIPELINE_VS_PEERS),
            (pl.STALWART_ASYNC, pl.PEERS_ISSUE_ASYNC),
        ),
        Target(
            f"AsyncResilientTransport adds under {HTTP_ADDED_US:g} µs per request over plain httpx "
            "(success path, httpx.MockTransport)",
            ISSUE2,
            transport_added,
            (ht.STALWART_ASYNC, ht.PLAIN_ASYNC),
        ),
        Target(
            f"Loopback, concurrency 50, httpx's default limits: AsyncResilientTransport (bulkhead 50) keeps "
            f">= {THROUGHPUT_VS_PLAIN:.0%} of plain httpx's requests/s, no failed request",
            ISSUE2,
            throughput(ht.PLAIN_LOOPBACK, ht.STALWART_LOOPBACK),
        ),
        Target(
            f"Loopback, concurrency 50, both over a pool of 50 kept alive: AsyncResilientTransport keeps "
            f">= {THROUGHPUT_VS_PLAIN:.0%} of plain httpx's requests/s, no failed request",
            ISSUE2,
            throughput(ht.PLAIN_POOL_LOOPBACK, ht.STALWART_POOL_LOOPBACK),
        ),
    ]
    return out


def _issue3() -> list[Target]:
    out = []
    for mode, models, peers in (
        ("sync", br.STALWART_MODELS_SYNC, br.PEERS_SYNC),
        ("async", br.STALWART_MODELS_ASYNC, br.PEERS_ASYNC),
    ):
        for model in models:
            label = model.split(", ", 1)[1].rsplit(" (", 1)[0]
            out.append(
                Target(
                    f"CircuitBreaker CLOSED ({label}, {mode}) cheaper than every breaker peer "
                    f"({', '.join(_short(p) for p in peers)})",
                    "issue 3",
                    cheaper_than(model, peers),
                    (model, *peers),
                )
            )
    for label, shared, local in brr.TARGET_PAIRS:
        out.append(
            Target(
                f"Redis-backed CircuitBreaker CLOSED ({label}) within {REDIS_VS_LOCAL:g}x of the local breaker",
                "issue 3",
                ratio_at_most(shared, local, REDIS_VS_LOCAL, strict=False),
                (shared, local),
            )
        )
    return out


def _issue4() -> list[Target]:
    out = [
        Target(
            "Retry success path (sync) cheaper than every retry peer (tenacity, stamina, backoff)",
            "issue 4",
            cheaper_than(rt.STALWART_SYNC, rt.PEERS_SYNC),
            (rt.STALWART_SYNC, *rt.PEERS_SYNC),
        ),
        Target(
            "Retry success path (async) cheaper than every retry peer (tenacity, stamina, backoff, hyx)",
            "issue 4",
            cheaper_than(rt.STALWART_ASYNC, rt.PEERS_ASYNC),
            (rt.STALWART_ASYNC, *rt.PEERS_ASYNC),
        ),
        Target(
            "Retry failure path, 3 attempts, zero delay (sync) cheaper than tenacity and stamina",
            "issue 4",
            cheaper_than(rt.FAIL_STALWART_SYNC, rt.FAIL_PEERS_SYNC),
            (rt.FAIL_STALWART_SYNC, *rt.FAIL_PEERS_SYNC),
        ),
        Target(
            "Retry failure path, 3 attempts, zero delay (async) cheaper than tenacity and stamina",
            "issue 4",
            cheaper_than(rt.FAIL_STALWART_ASYNC, rt.FAIL_PEERS_ASYNC),
            (rt.FAIL_STALWART_ASYNC, *rt.FAIL_PEERS_ASYNC),
        ),
    ]
    for label, with_budget, without in rt.BUDGET_PAIRS:
        bare = BARE_ASYNC if label.endswith("async") else BARE_SYNC
        out.append(
            Target(
                f"Retry budget bookkeeping ({label}) adds under {BUDGET_SHARE:.0%} to the success-path overhead",
                "issue 4",
                budget_share(with_budget, without, bare),
                (with_budget, without, bare),
            )
        )
    return out


def _issue6() -> list[Target]:
    return [
        Target(
            f"AdaptiveTimeout.record() under {RECORD_US:g} µs (window 100)",
            "issue 6",
            added_under(i6.RECORD, BARE_SYNC, RECORD_US),
            (i6.RECORD, BARE_SYNC),
        ),
        Target(
            f"AdaptiveTimeout.record() under {RECORD_US:g} µs (window 10,000: histogram)",
            "issue 6",
            added_under(i6.RECORD_LARGE, BARE_SYNC, RECORD_US),
            (i6.RECORD_LARGE, BARE_SYNC),
        ),
        Target(
            f"KeyedBulkhead (sync) within {KEYED_VS_BULKHEAD:g}x of Bulkhead per call",
            "issue 6",
            ratio_at_most(i6.KEYED_SYNC, i6.BULKHEAD_SYNC, KEYED_VS_BULKHEAD, strict=False),
            (i6.KEYED_SYNC, i6.BULKHEAD_SYNC),
        ),
        Target(
            f"KeyedBulkhead (async) within {KEYED_VS_BULKHEAD:g}x of Bulkhead per call",
            "issue 6",
            ratio_at_most(i6.KEYED_ASYNC, i6.BULKHEAD_ASYNC, KEYED_VS_BULKHEAD, strict=False),
            (i6.KEYED_ASYNC, i6.BULKHEAD_ASYNC),
        ),
        Target(
            f"DeadlineMiddleware adds no more than one Timeout plus {MIDDLEWARE_HEADER_US:g} µs over a bare ASGI app",
            "issue 6",
            middleware_overhead,
            (i6.ASGI_DEADLINE, i6.ASGI_TIMEOUT, i6.ASGI_BARE),
        ),
    ]


TARGETS: list[Target] = [*_issue2(), *_issue3(), *_issue4(), *_issue6()]
