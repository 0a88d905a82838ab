"""Testing support (public API): a fake clock for time-dependent code, and a testing mode for retries.

``FakeClock`` never sleeps for real: ``sleep``/``asleep`` advance its time and record the requested delays, so a
test of a backoff schedule or an open period runs instantly and deterministically.

``testing(attempts=..., no_sleep=True)`` makes every :class:`stalwart.Retry` in the process retry instantly and at
most ``attempts`` times while it is active, so an application's own test suite can exercise its retry paths.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._config import to_float, to_seconds
from ._policy import is_async_callable
from ._retry_testing import RetryTestingMode, enter_mode, leave_mode

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_TEST_PREFIX = "test"
"""Methods of a decorated class whose name starts with this are decorated (``unittest.mock.patch.TEST_PREFIX``)."""

__all__ = ["FakeClock", "testing"]


class FakeClock:
    """A manually driven monotonic clock implementing the :class:`stalwart.Clock` protocol.

    Args:
        start: the initial ``monotonic()`` value in seconds, finite (default ``0.0``).

    Raises:
        TypeError, ValueError: ``start`` is not a finite number.

    Attributes:
        sleeps: every delay passed to ``sleep``/``asleep``, in order (seconds).
        sleeping_advances_time: ``True``: a sleep moves this clock forward at once instead of waiting, so
            stalwart's periodic background work (the idempotency middleware's purge) does not run on a timer of
            this clock, which would race time forward; it runs from requests instead.
    """

    sleeping_advances_time = True

    def __init__(self, start: float = 0.0) -> None:
        if isinstance(start, bool) or not isinstance(start, int | float):
            raise TypeError(f"start must be a number of seconds, got {start!r}")
        if not math.isfinite(to_float(start)):
            raise ValueError(f"start must be a finite number of seconds, got {start!r}")
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The current fake time in seconds."""
        return self._now

    def advance(self, seconds: float | timedelta) -> None:
        """Move time forward by ``seconds`` (``float`` or ``timedelta``).

        Raises:
            ValueError: ``seconds`` is negative (monotonic time never goes back), NaN or infinite (either would
                leave the clock unusable).
            TypeError: ``seconds`` is not a number or a ``timedelta``.
        """
        step = to_seconds(seconds, "seconds")
        with self._lock:
            self._now += step

    def sleep(self, seconds: float) -> None:
        """Record ``seconds`` and advance time by it, without blocking."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        """Record ``seconds``, advance time by it and yield to the event loop once."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


class testing:  # noqa: N801 - a context manager used like a function, as contextlib's are
    """Retry testing mode: every :class:`stalwart.Retry` retries at once and at most ``attempts`` times.

    Usable as ``with testing(attempts=2): ...``, ``async with testing(...):``, or as a decorator on a sync or an
    ``async`` test (the mode is on while the test runs, awaits included), a generator (a ``yield`` fixture, sync or
    async: on from its first step to its end) or a test class (each ``test*`` method); nested uses restore the
    outer setting on exit, and uses that overlap without nesting (concurrent async tests, tests in threads) each end
    only their own use: the mode is that of the latest use still active. The mode is process-wide (threads started
    by the code under test see it). A pytest fixture to paste into ``conftest.py``::

        import pytest
        from stalwart.testing import testing

        @pytest.fixture(autouse=True)
        def fast_retries():
            with testing(attempts=2):
                yield

    Args:
        attempts: cap on attempts per call, including the first (``>= 1``; ``1`` disables retries), or ``None``
            to keep each policy's ``max_attempts``.
        no_sleep: when true (default), wait zero seconds between attempts, ignoring the backoff and any
            server-requested delay.

    Raises:
        TypeError, ValueError: ``attempts`` is not an int >= 1, or ``no_sleep`` is not a bool (at construction).
    """

    __slots__ = ("_mode", "_tokens")
    __test__ = False  # its name starts with "test": keep pytest from collecting it in modules that import it

    def __init__(self, *, attempts: int | None = None, no_sleep: bool = True) -> None:
        self._mode = RetryTestingMode(attempts=attempts, no_sleep=no_sleep)
        # This instance's active uses: it may be entered again, also concurrently (one decorator on tests that run
        # at the same time); all its uses have the same mode, so which of its tokens an exit ends does not matter.
        self._tokens: list[object] = []

    def __enter__(self) -> None:
        self._tokens.append(enter_mode(self._mode))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        leave_mode(self._tokens.pop())

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    @overload
    def __call__(self, fn: type[T], /) -> type[T]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R]: ...

    def __call__(self, fn: Any, /) -> Any:
        """Decorate a test, sync or ``async``, a generator (a pytest ``yield`` fixture, sync or async) or a class.

        The mode is on for the whole call; for a generator, from its first step to its end (between its yields
        too, as ``with testing(): yield`` in a fixture). A class has each of its ``test*`` methods decorated
        (inherited ones included, in the class itself; static and class methods too) and is returned itself, as
        ``unittest.mock.patch`` does: its other methods, ``setUp`` and its fixtures run outside the mode.

        A ``contextlib`` decorator would wrap an ``async def`` test in a sync function that turns the mode off as
        soon as the coroutine is *created*, before it runs (a generator likewise), and would replace a class by a
        function, which pytest does not collect: silent no-ops.
        """
        if isinstance(fn, type):
            return self._decorate_class(fn)
        if inspect.isasyncgenfunction(fn):
            return self._decorate_async_generator(fn)
        if inspect.isgeneratorfunction(fn):
            return self._decorate_generator(fn)
        if is_async_callable(fn):
            run = cast("Callable[..., Awaitable[Any]]", fn)

            @functools.wraps(fn)
            async def async_test(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await run(*args, **kwargs)

            return async_test

        @functools.wraps(fn)
        def sync_test(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return sync_test

    def _decorate_class(self, cls: type[T]) -> type[T]:
        for name in dir(cls):
            if not name.startswith(_TEST_PREFIX):
                continue
            raw = inspect.getattr_static(cls, name)
            if isinstance(raw, staticmethod):
                setattr(cls, name, staticmethod(self(raw.__func__)))
            elif isinstance(raw, classmethod):
                setattr(cls, name, classmethod(self(raw.__func__)))
            elif inspect.isfunction(raw):
                setattr(cls, name, self(raw))
        return cls

    def _decorate_generator(self, fn: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            with self:
                return (yield from fn(*args, **kwargs))

        return generator

    def _decorate_async_generator(self, fn: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def async_generator(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            inner = fn(*args, **kwargs)
            with self:
                try:
                    value = await inner.asend(None)
                    while True:
                        try:
                            sent = yield value
                        except GeneratorExit:
                            await inner.aclose()
                            raise
                        except BaseException as exc:  # thrown in: pass it on, as yield from would
                            value = await inner.athrow(exc)
                        else:
                            value = await inner.asend(sent)
                except StopAsyncIteration:
                    return

        return async_generator

    def __repr__(self) -> str:
        return f"testing(attempts={self._mode.attempts!r}, no_sleep={self._mode.no_sleep!r})"
