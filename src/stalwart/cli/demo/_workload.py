"""The open-loop workload driver.

Requests are *due* at a fixed arrival rate, whatever happens to the earlier ones: request ``i`` is due at
``start + i * duration / requests``. That is an open loop, like real users, who do not wait for each other; a
closed loop (the next request starts when one finishes) would quietly slow down when the upstream does and hide
the damage.

At most ``concurrency`` requests are in flight. A request that is due while all slots are taken waits in the
client's queue (first come, first served) and is sent as soon as a slot frees up; its latency is measured from the
moment it was *due*, not from the moment it was sent, so the time spent queued counts (no coordinated omission).
This is what a service with a fixed pool of workers does when its dependency slows down: requests pile up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from stalwart._clock import SYSTEM_CLOCK, Clock

from ._summary import Kind, Outcome

__all__ = ["Sender", "arrival_offsets", "run_open_loop"]

Sender = Callable[[int], Awaitable[Kind]]
"""Sends request ``i`` and says how it ended: ``"ok"``, ``"fallback"`` or ``"failed"``."""


def arrival_offsets(requests: int, duration: float) -> list[float]:
    """When each request is due, in seconds after the start: ``i * duration / requests`` (pure).

    Raises:
        ValueError: ``requests`` < 1 or ``duration`` <= 0.
    """
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests!r}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    step = duration / requests
    return [i * step for i in range(requests)]


async def run_open_loop(
    send: Sender,
    offsets: list[float],
    *,
    start: float,
    concurrency: int,
    clock: Clock = SYSTEM_CLOCK,
    on_done: Callable[[Kind], None] | None = None,
) -> list[Outcome]:
    """Send request ``i`` at ``start + offsets[i]`` with at most ``concurrency`` in flight; return the outcomes.

    Args:
        send: sends one request (see :data:`Sender`). An exception it lets escape counts as ``"failed"``;
            ``CancelledError`` and other ``BaseException``s propagate and cancel the whole run.
        offsets: seconds after ``start`` at which each request is due, non-decreasing.
        start: ``clock.monotonic()`` value at which the run begins.
        concurrency: maximum requests in flight; later ones queue.
        clock: source of ``monotonic()`` and ``asleep()`` (default the system clock).
        on_done: called with each request's kind as it finishes (for a progress bar).

    Returns:
        One :class:`Outcome` per request, in request order; ``latency`` runs from the due time to the end.

    Raises:
        ValueError: ``concurrency`` < 1.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
    slots = asyncio.Semaphore(concurrency)
    outcomes: list[Outcome | None] = [None] * len(offsets)

    async def one(index: int, due: float) -> None:
        async with slots:
            try:
                kind = await send(index)
            except Exception:
                kind = "failed"
        outcomes[index] = Outcome(kind, clock.monotonic() - due)
        if on_done is not None:
            on_done(kind)

    async with asyncio.TaskGroup() as group:
        for index, offset in enumerate(offsets):
            due = start + offset
            wait = due - clock.monotonic()
            if wait > 0:
                await clock.asleep(wait)
            group.create_task(one(index, due))
    return [outcome for outcome in outcomes if outcome is not None]
