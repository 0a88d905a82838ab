"""Regression: the HTTP transport piled give-up notes onto an exception object shared by many requests.

What was wrong: ``stalwart.httpx``'s ``TransportCore.gave_up`` added its PEP 678 note with ``exc.add_note(...)``
directly, on every request that gave up. When requests end with the *same* exception object (an inner transport
or a connection cache re-raising one failure, a failed shared future), each request appended another note: 20
requests left 20 notes, and a long-running service grew the list (and every logged traceback) without bound —
the defect ``Retry`` had and fixed with ``stalwart._retry_policy.add_give_up_note``. Now the transport uses it, the
origin owning its note: one note per origin per exception (the latest), the caller's own notes kept. Both drivers,
the hedged path and the "circuit breaker opened" note are covered.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stalwart._backoff import Backoff, Jitter
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock

URL = "https://api.example.com/items"
BACKOFF = Backoff.exponential(initial=1.0, jitter=Jitter.NONE)


def _shared_failure() -> httpx.ConnectError:
    error = httpx.ConnectError("connection refused (cached)")
    error.add_note("the caller's own note")
    return error


async def _send(mode: str, config: ResilienceConfig, error: BaseException, requests: int, clock: FakeClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    registry = Registry()
    if mode == "sync":
        transport: Any = ResilientTransport(httpx.MockTransport(handler), config=config, registry=registry, clock=clock)
        with httpx.Client(transport=transport) as client:
            for _ in range(requests):
                with pytest.raises(httpx.ConnectError):
                    client.get(URL)
                clock.advance(config.reset_timeout)  # a half-open breaker probes again
        return
    transport = AsyncResilientTransport(httpx.MockTransport(handler), config=config, registry=registry, clock=clock)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(requests):
            with pytest.raises(httpx.ConnectError):
                await client.get(URL)
            clock.advance(config.reset_timeout)


@pytest.mark.parametrize("mode", ["async", "sync", "hedged"])
async def test_requests_ending_with_one_exception_object_leave_one_note(mode: str) -> None:
    error = _shared_failure()
    config = ResilienceConfig(
        backoff=BACKOFF, max_attempts=2, use_breaker=False, hedge=1.0 if mode == "hedged" else None
    )
    await _send(mode, config, error, 20, FakeClock())
    assert error.__notes__[0] == "the caller's own note"
    assert len(error.__notes__) == 2
    assert "gave up after 2 attempts" in error.__notes__[1]


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_the_circuit_opened_note_is_kept_once_too(mode: str) -> None:
    error = _shared_failure()
    config = ResilienceConfig(
        backoff=BACKOFF, max_attempts=3, failure_threshold=1, success_threshold=1, half_open_max_calls=1
    )
    await _send(mode, config, error, 10, FakeClock())
    assert error.__notes__[0] == "the caller's own note"
    assert len(error.__notes__) == 2
    assert "the circuit breaker opened" in error.__notes__[1]
