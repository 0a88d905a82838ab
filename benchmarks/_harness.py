"""A small timeit-style harness for per-call overhead, sync and async, with interleaved rounds.

How a measurement is taken:

* Every case is a zero-argument callable (sync) or coroutine function (async) built by a factory. A case whose
  factory raises :class:`Unavailable`, :class:`ImportError` or :class:`NotImplementedError` is reported as "not
  available" with the reason, so the suite runs whatever subset of stalwart exists.
* Calibration: the inner iteration count ``n`` of each case is doubled until one timed chunk takes at least
  ``chunk_seconds`` (like ``timeit.Timer.autorange``).
* Rounds: every round times one chunk of every case, the order rotated (and reversed on odd rounds) from round to
  round, so machine drift and warm-up hit all cases equally; the rows of one table run back to back. The reported
  figure is the median over rounds of ``chunk time / n`` in nanoseconds per call, and every ratio is the median over
  rounds of the two rows' times in the same round (:func:`paired_ratio`), which cancels drift between rounds.
* Sync chunks run ``for _ in repeat(None, n): fn()``; async chunks run ``for _ in repeat(None, n): await fn()``
  inside one task of one event loop, the clock read inside the coroutine. Nothing is subtracted: the bare call of the
  same mode is measured in the same run and the ratios are taken against it.
* Every ``YIELD_EVERY`` (1,000) async calls the task awaits ``asyncio.sleep(0)`` so the event loop turns, as it does
  in a program. Without it a chunk never reaches the loop, every timer a row arms and cancels (``asyncio.timeout``,
  stalwart's ``Timeout``) stays in the loop's heap until the chunk ends, and the garbage collector keeps traversing
  those thousands of live handles: a cost that grows with the chunk length and that no program pays. The turn costs
  a few ns per call, the same for every async row.
* The garbage collector stays enabled (allocation-heavy code pays for its garbage, as it would in production). The
  objects that exist before timing starts (modules, the cases) are frozen (``gc.freeze()``), and a collection runs
  before every chunk, so each chunk starts from the same collector state and a full collection inside a chunk
  walks the row's own objects, not every module loaded: otherwise a row's cost depends on how many other rows
  (and libraries) the run holds.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

__all__ = [
    "Case",
    "Result",
    "Unavailable",
    "build",
    "calibrate",
    "measure",
    "paired_difference",
    "paired_ratio",
    "prepare",
    "run_once",
]

SyncFn = Callable[[], Any]
AsyncFn = Callable[[], Awaitable[Any]]


class Unavailable(Exception):
    """Raised by a case factory when the thing it measures is not available (module missing, API absent)."""


@dataclass
class Case:
    """One benchmark row.

    Attributes:
        group: the table the row belongs to (e.g. ``"retry"``).
        name: the row's label, unique across the run (e.g. ``"stalwart Retry"``).
        mode: ``"sync"`` or ``"async"``.
        make: factory returning the callable to time; for async cases it may be a coroutine function (it then runs
            inside the benchmark's event loop, for libraries that need a running loop at decoration time).
        baseline: name of the row the ratio "x bare" is taken against (``None`` for a baseline row itself).
        peers: names of rows this one is compared with (ratio "x peer").
        expect: the value one call must return (checked once before timing; ``None`` skips the check).
        stalwart: whether the row measures stalwart (used by the targets and the report).
        rebuild: build the callable afresh (untimed) before every chunk, for a row whose state grows with every
            call (purgatory's OPEN rejection re-raises one exception whose traceback grows), to bound memory.
        repeat: chunks of the row's group per round (the group's largest value counts); a table whose rows differ
            by a few percent of a large cost (one HTTP request) takes more paired samples than the others.
    """

    group: str
    name: str
    mode: str
    make: Callable[[], Any]
    baseline: str | None = None
    peers: tuple[str, ...] = ()
    expect: Any = 1
    stalwart: bool = False
    rebuild: bool = False
    repeat: int = 1
    # filled in by prepare()
    fn: Any = None
    unavailable: str | None = None
    n: int = 0


@dataclass
class Result:
    """The measurement of one case: ns per call for every round, and its median."""

    case: Case
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Relative spread: (max - min) / median over the middle half of the rounds' samples."""
        s = sorted(self.samples)
        if len(s) < 4:
            return (s[-1] - s[0]) / self.median if s else 0.0
        q = len(s) // 4
        mid = s[q : len(s) - q]
        return (mid[-1] - mid[0]) / self.median


def _time_sync(fn: SyncFn, n: int) -> int:
    it = repeat(None, n)
    t0 = time.perf_counter_ns()
    for _ in it:
        fn()
    return time.perf_counter_ns() - t0


YIELD_EVERY = 1000


async def _time_async(fn: AsyncFn, n: int) -> int:
    sleep = asyncio.sleep
    outer, rest = divmod(n, YIELD_EVERY)
    t0 = time.perf_counter_ns()
    for _ in repeat(None, outer):
        for _ in repeat(None, YIELD_EVERY):
            await fn()
        await sleep(0)  # let the loop turn, as it does in a program: it drops cancelled timers
    for _ in repeat(None, rest):
        await fn()
    return time.perf_counter_ns() - t0


def run_once(case: Case, loop: asyncio.AbstractEventLoop, n: int) -> int:
    """Time ``n`` calls of a prepared case; return nanoseconds."""
    if case.mode == "sync":
        return _time_sync(case.fn, n)
    return loop.run_until_complete(_time_async(case.fn, n))


def _check(case: Case, loop: asyncio.AbstractEventLoop) -> None:
    value = case.fn() if case.mode == "sync" else loop.run_until_complete(_once_async(case.fn))
    if case.expect is not None and value != case.expect:
        raise AssertionError(f"{case.name}: one call returned {value!r}, expected {case.expect!r}")


async def _once_async(fn: AsyncFn) -> Any:
    return await fn()


def build(case: Case, loop: asyncio.AbstractEventLoop) -> None:
    """(Re)build a case's callable with its factory."""
    made = case.make()
    if inspect.isawaitable(made):
        made = loop.run_until_complete(made)
    case.fn = made


def prepare(cases: Iterable[Case], loop: asyncio.AbstractEventLoop) -> list[Case]:
    """Build every case's callable and check one call; mark failures as unavailable. Returns the cases."""
    out = []
    for case in cases:
        try:
            build(case, loop)
            _check(case, loop)
        except (Unavailable, ImportError, NotImplementedError) as exc:
            case.unavailable = str(exc) or type(exc).__name__
        except Exception as exc:
            case.unavailable = f"error: {type(exc).__name__}: {exc}"
        out.append(case)
    return out


def calibrate(case: Case, loop: asyncio.AbstractEventLoop, chunk_seconds: float) -> int:
    """Find an inner iteration count whose chunk takes at least ``chunk_seconds``."""
    target = chunk_seconds * 1e9
    n = 1
    while True:
        if case.rebuild:
            build(case, loop)
        elapsed = run_once(case, loop, n)
        if elapsed >= target or n >= 1 << 26:
            return n
        # jump close to the target once the measurement is meaningful
        if elapsed > 1_000_000:
            n = max(n * 2, int(n * target / elapsed * 1.1))
        else:
            n *= 4


def measure(
    cases: list[Case],
    loop: asyncio.AbstractEventLoop,
    *,
    rounds: int,
    chunk_seconds: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Result]:
    """Calibrate and time the available cases in interleaved rounds; return results by case name.

    Every round times one chunk of every case (``repeat`` chunks for the cases of a group that asks for more). The
    cases of one group run back to back (so the rows compared with each other are timed close together), the
    groups' order and the order inside each group rotate from round to round, and odd rounds run reversed. Sample
    ``i`` of every row of a group comes from the same round and repetition, which is what :func:`paired_ratio`
    relies on (rows of different groups are paired only when both groups have the same ``repeat``).
    """
    live = [c for c in cases if c.unavailable is None]
    # Everything built so far (modules, cases) is long-lived: move it out of the collector's sight, so a full
    # collection that lands inside a chunk costs what the row's own garbage costs, not a walk over every module.
    gc.collect()
    gc.freeze()
    try:
        for case in live:
            case.n = calibrate(case, loop, chunk_seconds)
        results = {c.name: Result(c) for c in live}
        groups: dict[str, list[Case]] = {}
        for case in live:
            groups.setdefault(case.group, []).append(case)
        blocks = list(groups.values())
        for r in range(rounds):
            if progress is not None:
                progress(f"round {r + 1}/{rounds}")
            order: list[Case] = []
            shift = r % max(len(blocks), 1)
            for block in blocks[shift:] + blocks[:shift]:
                k = r % len(block)
                rotated = block[k:] + block[:k]
                for j in range(max(c.repeat for c in block)):  # every row of the block the same number of times
                    order.extend(rotated if j % 2 == 0 else rotated[::-1])
            if r % 2:
                order.reverse()
            for case in order:
                if case.rebuild:
                    build(case, loop)
                gc.collect()  # every chunk starts from the same collector state
                elapsed = run_once(case, loop, case.n)
                results[case.name].samples.append(elapsed / case.n)
    finally:
        gc.unfreeze()
    return results


def paired_ratio(a: Result, b: Result) -> float:
    """The median over rounds of ``a``'s time divided by ``b``'s time in the same round.

    Both were timed in the same round (and, within a group, one right after the other), so machine drift between
    rounds cancels out of each ratio; the median then discards the rounds that other load disturbed.
    """
    return statistics.median(x / y for x, y in zip(a.samples, b.samples, strict=True))


def paired_difference(a: Result, b: Result) -> float:
    """The median over rounds of ``a``'s time minus ``b``'s time in the same round (ns per call).

    For targets stated as an absolute amount added ("under 5 µs per request"): like :func:`paired_ratio`, each
    difference pairs two chunks timed close together in one round.
    """
    return statistics.median(x - y for x, y in zip(a.samples, b.samples, strict=True))
