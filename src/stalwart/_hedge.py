"""``Hedge``: hedged requests for idempotent reads (async only).

"The Tail at Scale" (Dean and Barroso, CACM 2013): send a request, and if it has not answered after about the 95th
percentile of its usual latency, send it again; use whichever answer comes first and cancel the other. A few percent
of extra load removes most of the latency tail. gRPC's hedging policy (gRFC A6) and Polly's hedging strategy are the
models for the rules below.

* The first attempt starts at once; while no attempt has given an acceptable answer, another starts every ``delay``
  seconds, up to ``max_hedged`` extra attempts. ``delay`` is fixed, or learned from recent calls
  (:meth:`Hedge.percentile`).
* The first *final* outcome wins: a result (``on_result`` false) or an exception that ``on`` does not cover. The
  attempts still running are cancelled and awaited, and a result that has to be thrown away (a loser that finished
  anyway, a rejected result) is handed to ``on_discard`` (so an HTTP layer can close the response).
* A *handled* outcome (an exception ``on`` covers, or a result ``on_result`` rejects) is not final: the next attempt
  starts at once instead of after the delay (gRPC's "non-fatal status codes"). When every attempt has ended that
  way and no attempt may start, the last one to end is the outcome, whatever the earlier ones were (as with
  ``Retry``): its exception propagates with a PEP 678 note, or its result is returned.
* Outcomes are judged in the order the attempts *ended* (not the order they started), also when several end before
  the caller's task wakes up.
* A :class:`~stalwart.Rejected` attempt (an open circuit, a full bulkhead) starts no further attempt but does not
  cancel the others: the primary may still answer.
* Hedges draw from the retry budget: each extra attempt needs ``budget.try_acquire_retry()``; a refusal emits
  ``RetryBudgetExhausted`` and ends the hedging of this call (the attempts running continue).
* Each attempt after the first emits :class:`~stalwart.HedgeStarted` (``reason`` ``"delay"`` or ``"failure"``) when
  a hook is installed.
* Cancelling the caller cancels every attempt; the call returns only after they have all ended, so no task
  outlives it.

The per-call state lives in :class:`stalwart._hedge_race.Race`. Nothing here blocks or reads a clock other than
the injected one.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, overload

from ._adaptive import AdaptiveTimeout
from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._config import check_int, to_seconds
from ._hedge_race import Race
from ._policy import Policy, check_decoratable
from ._retry_policy import RetryBudgetHook
from ._types import ExceptionSpec, compile_exception_spec

__all__ = ["Hedge", "PercentileDelay"]

P = ParamSpec("P")
T = TypeVar("T")


class PercentileDelay:
    """A hedging delay learned from recent latencies: the ``percentile`` of the last ``window`` primary attempts.

    Build it with :meth:`Hedge.percentile`. Until ``min_samples`` latencies are known the delay is ``initial``; it
    is always clamped to ``[minimum, maximum]``. The estimator is :class:`~stalwart.AdaptiveTimeout`'s (a sorted
    window, O(log n) per sample) with a multiplier of 1.

    What is recorded: the duration of each call's first attempt when it gives the winning answer, and, when a hedge
    wins instead, the first attempt's age at that moment (a censored sample: its latency was at least that). The
    estimate therefore follows the unhedged latency rather than drifting down to the hedges' latency. Failures are
    not recorded. Thread-safe; share one per operation.
    """

    __slots__ = ("_estimator",)

    def __init__(
        self,
        percentile: float = 0.95,
        *,
        initial: float | timedelta = 1.0,
        minimum: float | timedelta = 0.01,
        maximum: float | timedelta = 30.0,
        window: int = 100,
        min_samples: int = 10,
    ) -> None:
        self._estimator = AdaptiveTimeout(
            initial=initial,
            minimum=minimum,
            maximum=maximum,
            percentile=percentile,
            multiplier=1.0,
            window=window,
            min_samples=min_samples,
        )

    @property
    def current(self) -> float:
        """The delay now, in seconds."""
        return self._estimator.current_limit()

    @property
    def samples(self) -> int:
        """How many latencies the window holds."""
        return self._estimator.samples

    def record(self, seconds: float) -> None:
        """Add one latency (seconds, finite, ``>= 0``)."""
        self._estimator.record(seconds)

    def __repr__(self) -> str:
        e = self._estimator
        return (
            f"Hedge.percentile({e._percentile!r}, initial={e._initial!r}, minimum={e._minimum!r}, "
            f"maximum={e._maximum!r}, window={e._window!r}, min_samples={e._min_samples!r})"
        )


class Hedge(Policy):
    """Start another attempt of a slow call after ``delay``; the first acceptable answer wins, the others are cancelled.

    For idempotent reads only: every attempt may reach the dependency. Async only (a thread cannot be cancelled, so
    a sync hedge would leave its losers running): decorating a sync function, or :meth:`call`, raises ``TypeError``.
    In a pipeline, a ``Hedge`` takes the retry's place (``Pipeline.standard(retry=Hedge(...))``), so that every
    attempt goes through the breaker and the bulkhead; a ``Retry`` may also be placed around it. The module
    docstring gives the rules.

    Args:
        delay: seconds (``float`` or ``timedelta``, ``>= 0``) after which the next attempt starts, or a learned
            delay from :meth:`Hedge.percentile`. ``0`` starts every attempt at once.
        max_hedged: extra attempts at most (``>= 1``); default ``1`` (two attempts in all).
        on: exceptions that are not an answer (a type, a tuple of types or a predicate): the next attempt starts
            at once and the others keep running. Default ``()``: any exception is the answer, as gRPC hedging with
            no non-fatal status codes. ``CancelledError``, ``KeyboardInterrupt``, ``SystemExit`` and
            ``GeneratorExit`` are never handled; ``Rejected`` is handled as described in the module docstring.
        on_result: ``(result) -> bool``; true rejects the result (handled like an exception ``on`` covers).
        on_discard: ``(result) -> None``, called with each result that is thrown away (a loser that finished
            anyway, a rejected result that is not returned). It may be a coroutine function (or return an
            awaitable), which is awaited, e.g. ``httpx.Response.aclose``. An exception it raises is logged on the
            ``stalwart`` logger and ignored.
        budget: a retry budget shared with the dependency's retries (:class:`~stalwart.RetryBudget`); each extra
            attempt needs ``try_acquire_retry()``. ``RetryBudget.ratio(percent=...)`` bounds the extra load to that
            percentage of calls. Default ``None``.
        name: the name in events and notes; default ``"hedge"``.
        clock: the monotonic clock timing delays and latencies (tests pass a fake clock).

    Raises:
        TypeError, ValueError: an invalid parameter, naming it (at construction).
    """

    __slots__ = (
        "_budget",
        "_clock",
        "_delay",
        "_handles",
        "_learned",
        "_loop_timer",
        "_max_hedged",
        "_name",
        "_on_discard",
        "_on_result",
    )

    def __init__(
        self,
        delay: float | timedelta | PercentileDelay,
        max_hedged: int = 1,
        *,
        on: ExceptionSpec = (),
        on_result: Callable[[Any], bool] | None = None,
        on_discard: Callable[[Any], object] | None = None,
        budget: RetryBudgetHook | None = None,
        name: str = "hedge",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if isinstance(delay, PercentileDelay):
            self._learned: PercentileDelay | None = delay
            self._delay = 0.0
        else:
            self._learned = None
            self._delay = to_seconds(delay, "delay")
        self._max_hedged = check_int(max_hedged, "max_hedged", minimum=1)
        self._handles = compile_exception_spec(on, parameter="on")
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a callable (result) -> bool or None, got {on_result!r}")
        if on_discard is not None and not callable(on_discard):
            raise TypeError(f"on_discard must be a callable (result) -> None or None, got {on_discard!r}")
        if budget is not None and not isinstance(budget, RetryBudgetHook):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must implement the Clock protocol, got {clock!r}")
        self._on_result = on_result
        self._on_discard = on_discard
        self._budget = budget
        self._name = name
        self._clock = clock
        # The system clock is the event loop's clock: a loop timer is cheaper than a sleeping task.
        self._loop_timer = isinstance(clock, SystemClock)

    @staticmethod
    def percentile(
        percentile: float = 0.95,
        *,
        initial: float | timedelta = 1.0,
        minimum: float | timedelta = 0.01,
        maximum: float | timedelta = 30.0,
        window: int = 100,
        min_samples: int = 10,
    ) -> PercentileDelay:
        """A delay learned from recent calls, to pass as ``delay``: ``Hedge(Hedge.percentile(0.95))``.

        Args:
            percentile: the latency quantile to hedge at, a fraction in (0, 1]; default ``0.95`` ("The Tail at
                Scale" hedges at the 95th percentile, for about 5 % extra load).
            initial: the delay until ``min_samples`` latencies are known, seconds; default ``1.0``.
            minimum: the smallest delay, seconds ``> 0``; default ``0.01``.
            maximum: the largest delay, seconds ``>= minimum``; default ``30.0``.
            window: how many recent latencies are kept; default ``100``.
            min_samples: latencies needed before the delay adapts, ``<= window``; default ``10``.

        Raises:
            TypeError, ValueError: an invalid parameter, naming it.
        """
        return PercentileDelay(
            percentile, initial=initial, minimum=minimum, maximum=maximum, window=window, min_samples=min_samples
        )

    @property
    def name(self) -> str:
        """The name used in events and notes."""
        return self._name

    @property
    def delay(self) -> float:
        """The current delay before the next attempt, seconds (learned delays change with traffic)."""
        return self._delay if self._learned is None else self._learned.current

    @property
    def max_hedged(self) -> int:
        """Extra attempts at most."""
        return self._max_hedged

    @property
    def budget(self) -> RetryBudgetHook | None:
        """The retry budget, if any."""
        return self._budget

    def __repr__(self) -> str:
        delay = self._learned if self._learned is not None else self._delay
        return f"Hedge({delay!r}, max_hedged={self._max_hedged}, name={self._name!r}, budget={self._budget!r})"

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Not supported: hedging needs cancellation, which threads lack.

        Raises:
            TypeError: always.
        """
        raise TypeError(f"Hedge is async only: {getattr(fn, '__qualname__', fn)!r} is called synchronously")

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)``, hedged; return the winning result (or raise the final exception)."""
        race = Race(self, fn, args, kwargs)
        result: T = await race.run()
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate the coroutine function ``fn``; the wrapper keeps its signature.

        Raises:
            TypeError: ``fn`` is a sync function, a generator or an async-generator function.
        """
        if not check_decoratable(fn, self):
            raise TypeError(
                f"Hedge is async only and cannot decorate the sync function {getattr(fn, '__qualname__', fn)!r}: "
                "a thread cannot be cancelled, so the losing attempts would keep running"
            )
        run = self.run

        @functools.wraps(fn)
        async def hedged(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await run(fn, *args, **kwargs)

        return hedged
