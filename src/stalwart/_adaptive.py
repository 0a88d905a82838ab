"""``AdaptiveTimeout``: a per-attempt timeout that follows the observed latency, per key.

The seed's adaptive timeout (15.2): keep the last ``window`` (100) response times; once ``min_samples`` (10) exist,
the timeout is ``percentile`` (the 99th) of them times ``multiplier`` (1.5), clamped to ``[minimum, maximum]``
(1 s, 30 s); before that it is ``initial`` (5 s). Unlike the seed's, recording a sample never sorts the window:
the estimators of ``_latency_window`` update incrementally (exact up to 4096 samples, a log-bucket histogram
beyond), so a sample costs a bounded time whatever the window.

Production additions: one estimate **per key** (an endpoint, an operation, a host), at most ``max_keys`` of them
(least recently recorded evicted first), so memory is bounded; the current limit of each key is computed when a
sample is recorded, so reading it is one attribute; a call cut by its own timeout is recorded as a *censored*
sample at the timeout value, so the estimate grows when the service slows down.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from datetime import timedelta
from decimal import Decimal
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar

from ._clock import SYSTEM_CLOCK, Clock
from ._config import check_int, to_float, to_seconds
from ._deadline import current_deadline, enter_async_scope, enter_sync_scope, exit_sync_scope
from ._exceptions import DeadlineExceeded
from ._latency_window import LatencyWindow, new_window
from ._policy import Policy, refuse_coroutine, refuse_if_not_awaited

__all__ = ["AdaptiveTimeout", "AdaptiveTimeoutKey"]

P = ParamSpec("P")
T = TypeVar("T")

_INF = math.inf


class _Estimate:
    """One key's window and its current limit (seconds, not clamped by the ambient deadline)."""

    __slots__ = ("limit", "window")

    def __init__(self, window: LatencyWindow, limit: float) -> None:
        self.window = window
        self.limit = limit


class AdaptiveTimeout(Policy):
    """A timeout set from a latency quantile: ``clamp(quantile(last window samples) x multiplier)``, per key.

    The quantile is the nearest-rank ``percentile`` of the last ``window`` samples (with 100 samples and
    ``percentile=0.99``, the second largest): exact up to 4096 samples, within 1/16 of it beyond (a log-bucket
    histogram). Until ``min_samples`` samples exist the timeout is ``initial``.

    Use it as a per-attempt timeout policy (the innermost policy of ``Pipeline.standard``, as
    ``attempt_timeout=``): each call runs under a :class:`~stalwart.Timeout` of the current value, with the same
    semantics (async calls are cancelled and raise :class:`~stalwart.DeadlineExceeded`; sync calls get the ambient
    deadline and are not pre-empted), and its duration is recorded: a success at its measured duration, a call
    cut by this timeout at the timeout value (a censored sample) — an async call cancelled by it, or a call, sync
    or async, failing with :class:`~stalwart.DeadlineExceeded` once this timeout's deadline has passed (a sync
    Retry, the sync transport or a nested Timeout giving up at the ambient deadline it set). Calls that fail
    otherwise, are cancelled from outside or end at a tighter ambient deadline are not recorded: their duration says
    little about the service's latency. Or use it by hand: :meth:`record` durations and read :attr:`timeout`.

    **Keys.** ``record(seconds, key)`` and ``timeout_for(key)`` keep one estimate per key (say per endpoint,
    ``"GET /users/{id}"``), each with its own window; ``for_key(key)`` is a policy timing calls under one key. Keys
    must be hashable and should be few (endpoints, not user ids): at most ``max_keys`` are kept, the least recently
    recorded one is dropped when a new one arrives (it starts again from ``initial``). The default key (``None``)
    is kept apart and never evicted. Memory: about ``40 x window`` bytes per key up to 4096 samples, ``16 x
    window`` plus under 2 KiB beyond.

    **Following a step.** With the defaults, after a step up of the latency to 3x its previous level (say from
    ``L`` to ``3L``, with a timeout of ``1.5L``), the first calls time out and are recorded at the timeout, each
    pair of them raising the timeout 1.5x: after 4 such samples it exceeds ``3L`` (``1.5**3 L``) and calls succeed
    again; after 6 it is ``4.5L``, 1.5x the new latency. After a step back down it returns to ``1.5L`` once at most
    one of the last 100 samples is slow, i.e. within 99 samples. In general a quantile moves once ``window -
    ceil(percentile x window) + 1`` samples lie beyond it (2 with the defaults).

    **Cost.** ``record()`` takes a lock and costs well under 2 µs (about 1 µs at the default window); reading
    :attr:`timeout` takes no lock.

    Thread-safe: samples may be recorded from any thread.

    Args:
        initial: the timeout before ``min_samples`` samples exist, seconds (default 5.0, the seed's); clamped to
            ``[minimum, maximum]``.
        minimum: the lower clamp, seconds > 0 (default 1.0).
        maximum: the upper clamp, seconds >= ``minimum`` (default 30.0).
        percentile: the quantile, a fraction in (0, 1] (default 0.99).
        multiplier: the factor applied to the quantile, > 0 (default 1.5).
        window: how many recent samples are kept per key, an ``int`` >= 1 (default 100).
        min_samples: samples needed before adapting, ``1 <= min_samples <= window`` (default 10).
        max_keys: the most keys kept besides the default one, an ``int`` >= 1 (default 1000).
        clock: the monotonic clock used to time calls (default: the system clock).

    Raises:
        ValueError: a parameter outside its range (the message names it).
        TypeError: a parameter of the wrong type.
    """

    __slots__ = (
        "_clock",
        "_default",
        "_initial",
        "_keys",
        "_lock",
        "_max_keys",
        "_maximum",
        "_min_samples",
        "_minimum",
        "_multiplier",
        "_percentile",
        "_window",
    )

    def __init__(
        self,
        *,
        initial: float | timedelta = 5.0,
        minimum: float | timedelta = 1.0,
        maximum: float | timedelta = 30.0,
        percentile: float = 0.99,
        multiplier: float = 1.5,
        window: int = 100,
        min_samples: int = 10,
        max_keys: int = 1000,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._minimum = to_seconds(minimum, "minimum", allow_zero=False)
        self._maximum = to_seconds(maximum, "maximum", allow_zero=False)
        if self._maximum < self._minimum:
            raise ValueError(f"maximum must be >= minimum, got maximum={self._maximum!r} < minimum={self._minimum!r}")
        self._initial = min(self._maximum, max(self._minimum, to_seconds(initial, "initial", allow_zero=False)))
        self._percentile = _check_fraction(percentile, "percentile")
        self._multiplier = _check_positive(multiplier, "multiplier")
        self._window = check_int(window, "window", minimum=1)
        self._min_samples = check_int(min_samples, "min_samples", minimum=1)
        if self._min_samples > self._window:
            raise ValueError(f"min_samples must be <= window, got {min_samples!r} > {window!r}")
        self._max_keys = check_int(max_keys, "max_keys", minimum=1)
        self._clock = clock
        self._default = self._new_estimate()
        self._keys: OrderedDict[Hashable, _Estimate] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"AdaptiveTimeout(initial={self._initial!r}, minimum={self._minimum!r}, maximum={self._maximum!r}, "
            f"percentile={self._percentile!r}, multiplier={self._multiplier!r}, window={self._window!r}, "
            f"min_samples={self._min_samples!r}, max_keys={self._max_keys!r})"
        )

    def _new_estimate(self) -> _Estimate:
        return _Estimate(new_window(self._window, self._percentile), self._initial)

    # -- reading ----------------------------------------------------------------------------------------------------

    @property
    def samples(self) -> int:
        """How many samples the default key's window holds (at most ``window``)."""
        return self._default.window.count

    def samples_for(self, key: Hashable) -> int:
        """How many samples ``key``'s window holds (``0`` for a key never recorded, or evicted)."""
        estimate = self._default if key is None else self._keys.get(key)
        return 0 if estimate is None else estimate.window.count

    @property
    def tracked_keys(self) -> int:
        """How many keys (besides the default one) have an estimate (at most ``max_keys``)."""
        return len(self._keys)

    @property
    def timeout(self) -> float:
        """The default key's timeout in seconds, clamped to ``[minimum, maximum]`` and to the ambient deadline."""
        return _clamp_to_ambient(self._default.limit)

    def timeout_for(self, key: Hashable) -> float:
        """``key``'s timeout in seconds (``initial`` for an unknown key), clamped like :attr:`timeout`."""
        return _clamp_to_ambient(self.current_limit(key))

    def current_limit(self, key: Hashable = None) -> float:
        """``key``'s timeout in seconds, clamped to ``[minimum, maximum]`` but **not** to the ambient deadline.

        For drivers that clamp by the deadline themselves (the httpx transport). Takes no lock.
        """
        if key is None:
            return self._default.limit
        estimate = self._keys.get(key)
        return self._initial if estimate is None else estimate.limit

    # -- recording --------------------------------------------------------------------------------------------------

    def record(self, seconds: float | timedelta, key: Hashable = None) -> None:
        """Add one observed duration (seconds, finite and >= 0) to ``key``'s window (default: the default key).

        Record a call cut by its timeout at the timeout value (a censored sample: it took at least that long), so
        the estimate can grow. The oldest sample leaves once ``window`` are held; a new key beyond ``max_keys``
        evicts the least recently recorded one. ``seconds`` may be any real number (``int``, ``float``,
        ``Fraction``, ``Decimal``, a NumPy scalar) or a ``timedelta``; it is kept as a ``float``.

        Raises:
            TypeError: ``seconds`` is not a number or a ``timedelta`` (``bool`` included).
            ValueError: ``seconds`` is negative, NaN or infinite (an ``int`` too large for a float included).
        """
        given = seconds
        if type(seconds) is not float:
            seconds = _sample_seconds(seconds)
        if not 0.0 <= seconds < _INF:
            raise ValueError(f"seconds must be a finite duration >= 0, got {given!r}")
        with self._lock:
            if key is None:
                estimate = self._default
            else:
                keys = self._keys
                found = keys.get(key)
                if found is None:
                    estimate = keys[key] = self._new_estimate()
                    if len(keys) > self._max_keys:
                        keys.popitem(last=False)
                else:
                    estimate = found
                    keys.move_to_end(key)
            window = estimate.window
            window.add(seconds)
            if window.count >= self._min_samples:
                value = window.value * self._multiplier  # type: ignore[operator] # not None once a sample exists
                if value < self._minimum:
                    value = self._minimum
                elif value > self._maximum:
                    value = self._maximum
                estimate.limit = value

    # -- as a policy ------------------------------------------------------------------------------------------------

    def for_key(self, key: Hashable) -> AdaptiveTimeoutKey:
        """A policy timing calls under ``key``'s estimate (same behaviour as this one's :meth:`run` / :meth:`call`).

        Raises:
            TypeError: ``key`` is not hashable.
        """
        hash(key)
        return AdaptiveTimeoutKey(self, key)

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` under the default key's timeout and record its duration.

        Raises:
            DeadlineExceeded: as :meth:`stalwart.Timeout.run`.
        """
        return await self._run(None, fn, args, kwargs)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` with the ambient deadline set to the current timeout; record its duration.

        Sync code is not pre-empted: a late result is returned (and recorded at its full duration); a
        ``DeadlineExceeded`` raised by ``fn`` once the deadline has passed is recorded at the timeout (censored).

        Raises:
            DeadlineExceeded: the ambient deadline had already passed (the call was not started).
            TypeError: ``fn`` returned a coroutine (an ``async def`` function belongs in :meth:`run`).
        """
        return self._call(None, fn, args, kwargs)

    async def _run(self, key: Hashable, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
        clock = self._clock
        limit = self.current_limit(key)
        scope = enter_async_scope(limit, clock, fail_fast=True)
        start = clock.monotonic()
        awaitable: Any = fn  # until fn returns (a function is not awaitable: told apart below)
        try:
            awaitable = fn(*args, **kwargs)
            result: T = await awaitable
        except BaseException as exc:
            if scope is not None:  # None: a tighter ambient deadline, enforced by an enclosing scope
                try:
                    scope.exit(exc)
                except DeadlineExceeded:
                    if scope.own:
                        self.record(limit, key)  # censored: the call took at least this long
                    raise
                if scope.own and isinstance(exc, DeadlineExceeded) and scope.deadline.expired:
                    # Code inside gave up at this timeout's deadline before the timer cancelled it (a child task's
                    # scope clamped to it, a policy refusing to start past it): cut by this timeout all the same.
                    self.record(limit, key)
            refuse_if_not_awaited(awaitable, fn, self, exc)  # a usage error: not a sample
            raise
        if scope is not None:
            scope.exit(None)
        self.record(clock.monotonic() - start, key)
        return result

    def _call(self, key: Hashable, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        clock = self._clock
        limit = self.current_limit(key)
        token = enter_sync_scope(limit, clock)
        start = clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        except DeadlineExceeded:
            # Sync code is not pre-empted: a call is cut by this timeout when what it runs (a sync Retry, the sync
            # transport, a nested Timeout) gives up at the ambient deadline this timeout set. Censored at the limit,
            # as an async call cancelled by it, or the estimate could never grow past a latency step.
            if token is not None:
                ambient = current_deadline()
                if ambient is not None and ambient.expired:
                    self.record(limit, key)
            raise
        finally:
            exit_sync_scope(token)
        if type(result) is CoroutineType:
            refuse_coroutine(result, self, fn)
        self.record(clock.monotonic() - start, key)
        return result


class AdaptiveTimeoutKey(Policy):
    """One key of an :class:`AdaptiveTimeout`, as a policy (``adaptive.for_key("GET /users")``).

    Shares the parent's settings and estimates: calls through it are timed under the key's current timeout and
    recorded under the key.
    """

    __slots__ = ("_key", "_parent")

    def __init__(self, parent: AdaptiveTimeout, key: Hashable) -> None:
        self._parent = parent
        self._key = key

    def __repr__(self) -> str:
        return f"{self._parent!r}.for_key({self._key!r})"

    @property
    def key(self) -> Hashable:
        """The key."""
        return self._key

    @property
    def timeout(self) -> float:
        """The key's timeout in seconds, clamped to ``[minimum, maximum]`` and to the ambient deadline."""
        return self._parent.timeout_for(self._key)

    @property
    def samples(self) -> int:
        """How many samples the key's window holds."""
        return self._parent.samples_for(self._key)

    async def run(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` under the key's timeout and record its duration under the key.

        Raises:
            DeadlineExceeded: as :meth:`stalwart.Timeout.run`.
        """
        return await self._parent._run(self._key, fn, args, kwargs)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` under the key's timeout (no pre-emption) and record its duration.

        Raises:
            DeadlineExceeded: the ambient deadline had already passed (the call was not started).
        """
        return self._parent._call(self._key, fn, args, kwargs)


def _clamp_to_ambient(limit: float) -> float:
    ambient = current_deadline()
    if ambient is not None:
        left = ambient.remaining()
        if left < limit:
            return left
    return limit


def _sample_seconds(value: object) -> float:
    """A sample given as a number other than ``float`` (or a ``timedelta``) as ``float`` seconds, unchecked.

    Converted before it reaches a window: a ``Decimal`` kept as such made every later estimate fail (``Decimal *
    float``), and an ``int`` beyond float range stayed the window's maximum with each estimate overflowing.
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise TypeError(f"seconds must be a number of seconds or a timedelta, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int (or Fraction) too large for a float: refused as infinite
        return _INF
    except (TypeError, ValueError):  # a numbers.Real that cannot say what float it is
        raise TypeError(f"seconds must be a number of seconds or a timedelta, got {value!r}") from None


def _check_fraction(value: float, parameter: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{parameter} must be a fraction in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise ValueError(f"{parameter} must be a fraction in (0, 1], got {value!r}")
    return float(value)


def _check_positive(value: float, parameter: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{parameter} must be a number, got {value!r}")
    number = to_float(value)  # an int too large for a float becomes inf, refused below (not OverflowError)
    if not 0.0 < number < _INF:  # also refuses NaN
        raise ValueError(f"{parameter} must be finite and > 0, got {value!r}")
    return number
