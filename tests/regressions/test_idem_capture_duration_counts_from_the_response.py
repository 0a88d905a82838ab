"""Regression: ``max_capture_duration`` was counted from the start of the handler, not of the response, so a slow
handler (a payment provider taking its time, more than 5 minutes by default) that then answered a small JSON body
had that body stored as omitted: the retry got the status with an empty body and ``Idempotency-Body-Omitted``,
losing the payment id the first client never received (G2).

Spec §2.10/§2.13: the limit "turns longer *streams* into body_omitted" and "bounds runaway streams"; the time spent
before the first response byte is not a stream. The limit now runs from ``http.response.start``. (The peer bug of the
same family: gofiber/fiber PR #4287, where a capture limit stopped a legitimate response from being stored.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from _idem_asgi import post, wrap

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware


class SteppedClock:
    """A monotonic clock moved by the test; long sleeps (heartbeats) wait until cancelled, short ones yield."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError("no blocking sleeps")

    async def asleep(self, seconds: float) -> None:
        if seconds >= 1.0:
            await asyncio.Event().wait()
        await asyncio.sleep(0)


async def call(mw: Any) -> tuple[int | None, dict[bytes, bytes], bytes]:
    answer = await post(mw)
    return answer.status, answer.headers, answer.body


def middleware(app: Any, clock: SteppedClock) -> IdempotencyMiddleware:
    return wrap(app, config=IdempotencyConfig(max_capture_duration=300.0), clock=clock)


async def test_a_slow_handler_with_a_small_answer_is_stored_in_full() -> None:
    clock = SteppedClock()
    calls = []

    async def slow_provider(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        await receive()
        clock.now += 400.0  # the provider answers after more than max_capture_duration
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"payment_id": "p-1"}'})

    mw = middleware(slow_provider, clock)
    first = await call(mw)
    replay = await call(mw)
    assert len(calls) == 1
    assert first[2] == replay[2] == b'{"payment_id": "p-1"}'
    assert b"idempotency-body-omitted" not in replay[1]
    assert replay[1][b"idempotent-replayed"] == b"true"


async def test_a_stream_longer_than_the_limit_is_still_stored_as_omitted() -> None:
    clock = SteppedClock()

    async def long_stream(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(4):
            clock.now += 100.0
            await send({"type": "http.response.body", "body": f"part {i};".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})

    mw = middleware(long_stream, clock)
    first = await call(mw)
    replay = await call(mw)
    assert first[2] == b"part 0;part 1;part 2;part 3;end"  # the first client gets the whole stream
    assert (replay[0], replay[2]) == (200, b"")
    assert replay[1][b"idempotency-body-omitted"] == b"true"
