"""Deadlines: an absolute instant on the monotonic clock, carried through the call stack in a context variable.

A deadline scope (``with deadline(2.0):`` / ``async with deadline(2.0):``) sets the *ambient deadline* for the code
inside it. Nested scopes take the minimum: an inner scope can shorten the time left, never extend it. The clock
starts when the scope is entered. Policies read the ambient deadline with :func:`current_deadline` and never sleep
or wait past it; the httpx transport sends what is left of it to the next service.

In async code the scope also enforces the deadline, as trio's ``fail_after`` does: when it expires the task is
cancelled and the scope raises :class:`~stalwart.DeadlineExceeded` (a :class:`TimeoutError`). Only the
cancellation the scope caused is converted; a cancellation from outside propagates untouched. In sync code the
scope cannot pre-empt running code: it sets the ambient deadline that stalwart's policies (and the httpx
transport's timeouts) respect.

Deadline arithmetic follows gRPC: between processes a deadline travels as a *relative* budget, so clock skew between
hosts does not matter.
"""

from __future__ import annotations

import asyncio
import math
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from ._clock import SYSTEM_CLOCK, Clock
from ._config import to_seconds
from ._exceptions import DeadlineExceeded

__all__ = ["Deadline", "current_deadline", "deadline", "remaining_time"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute instant on a monotonic clock.

    Attributes:
        at: the instant, in seconds on ``clock.monotonic()``.
        clock: the clock ``at`` is measured on (default: the system clock).
    """

    at: float
    clock: Clock = SYSTEM_CLOCK

    @classmethod
    def after(cls, seconds: float | timedelta, *, clock: Clock = SYSTEM_CLOCK) -> Deadline:
        """A deadline ``seconds`` from now.

        Raises:
            ValueError: ``seconds`` is negative or NaN.
        """
        return cls(clock.monotonic() + to_seconds(seconds, "seconds", allow_inf=True), clock)

    def remaining(self, now: float | None = None) -> float:
        """Seconds left (``float``, never negative); ``now`` defaults to ``clock.monotonic()``."""
        left = self.at - (self.clock.monotonic() if now is None else now)
        return left if left > 0.0 else 0.0

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.clock.monotonic() >= self.at

    def child(self, buffer: float | timedelta) -> Deadline:
        """A deadline ``buffer`` seconds earlier, leaving this service time for its own work.

        The seed's deadline propagation keeps 0.5 s per hop; the child may already be expired.

        Raises:
            ValueError: ``buffer`` is negative or NaN.
        """
        return Deadline(self.at - to_seconds(buffer, "buffer"), self.clock)

    def __lt__(self, other: Deadline) -> bool:
        return self.at < other.at


_current: ContextVar[Deadline | None] = ContextVar("stalwart_deadline", default=None)


def current_deadline() -> Deadline | None:
    """The ambient deadline of the current context, or ``None`` when no scope is active."""
    return _current.get()


def remaining_time() -> float | None:
    """Seconds left until the ambient deadline (``0.0`` when passed), or ``None`` when there is none."""
    current = _current.get()
    return None if current is None else current.remaining()


class deadline:  # noqa: N801 - a context manager used like a function, as contextlib's are
    """A deadline scope: ``with deadline(seconds):`` or ``async with deadline(seconds):``.

    Args:
        seconds: time allowed for the body, ``float`` seconds or a ``timedelta``; ``None`` or ``math.inf`` sets no
            limit of its own (the enclosing deadline still applies).
        clock: the monotonic clock (default: the system clock).

    The effective deadline is the earlier of this one and the enclosing one. In ``async with`` the task is
    cancelled when this scope's deadline is reached and :class:`~stalwart.DeadlineExceeded` is raised at the end of
    the scope; the ``with`` form only sets the ambient deadline (sync code cannot be pre-empted).

    Raises:
        ValueError: ``seconds`` is negative or NaN.
        DeadlineExceeded: (async form) the deadline expired inside the scope.
    """

    __slots__ = ("_cancelling", "_clock", "_deadline", "_expired", "_handle", "_seconds", "_task", "_token")

    def __init__(self, seconds: float | timedelta | None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._seconds = math.inf if seconds is None else to_seconds(seconds, "seconds", allow_inf=True)
        self._clock = clock
        self._token: Token[Deadline | None] | None = None
        self._deadline: Deadline | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._expired = False
        self._cancelling = 0

    @property
    def deadline(self) -> Deadline | None:
        """The effective deadline inside the scope (``None`` before entry or when unlimited)."""
        return self._deadline

    def _enter(self) -> Deadline | None:
        if self._token is not None:
            raise RuntimeError("a deadline scope cannot be entered twice")
        outer = _current.get()
        if math.isinf(self._seconds):
            effective = outer
        else:
            mine = Deadline(self._clock.monotonic() + self._seconds, self._clock)
            effective = mine if outer is None or mine.at < outer.at else outer
        self._deadline = effective
        self._token = _current.set(effective)
        return effective

    def _exit(self) -> None:
        if self._token is not None:
            _current.reset(self._token)

    def __enter__(self) -> Deadline | None:
        return self._enter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit()

    async def __aenter__(self) -> Deadline | None:
        effective = self._enter()
        if not math.isinf(self._seconds):
            task = asyncio.current_task()
            if task is None:
                raise RuntimeError("async with deadline(...) must be used inside a task")
            self._task = task
            self._cancelling = task.cancelling()
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self._seconds, self._on_expiry)
        return effective

    def _on_expiry(self) -> None:
        self._expired = True
        self._handle = None
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # Only the cancellation this scope caused becomes DeadlineExceeded (as asyncio.timeout does).
        if (
            self._expired
            and self._task is not None
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise DeadlineExceeded(f"deadline of {self._seconds:.3f}s exceeded", timeout=self._seconds) from exc
