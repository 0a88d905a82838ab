"""Regression: ``max_capture_duration`` only stopped capturing; a stream outlasting it kept its record IN_PROGRESS.

Spec §2.10: ``max_capture_duration`` "turns longer streams into ``body_omitted``"; §2.13: it "bounds runaway
streams". The tee stopped buffering after the limit but completed the record only at the stream's final message,
and the heartbeat renewed the lease all along: for an endless stream (SSE, a long poll) every retry got 409 for as
long as it ran, while the logged warning claimed such streams "are stored with body_omitted". Now, at the first
chunk after the limit, a result to store is completed with its status and headers and ``body_omitted`` (the
heartbeat stops); the first client's stream goes on untouched; nothing the handler does afterwards changes the
record. A stream to release (a release status) is still settled at its end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from _idem_asgi import post, wrap

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, MemoryStore, State

SSE = [(b"content-type", b"text/event-stream"), (b"x-stream", b"1")]


class SteppedClock:
    """A fake monotonic clock moved by the test; heartbeat sleeps count and wait until cancelled, short ones yield."""

    def __init__(self) -> None:
        self.now = 0.0
        self.heartbeats_waiting = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError("no blocking sleeps")

    async def asleep(self, seconds: float) -> None:
        if seconds >= 1.0:
            self.heartbeats_waiting += 1
            try:
                await asyncio.Event().wait()
            finally:
                self.heartbeats_waiting -= 1
        await asyncio.sleep(0)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.completions = 0
        self.abandons = 0

    async def complete(self, record_id: str, **kwargs: Any) -> bool:
        self.completions += 1
        return await super().complete(record_id, **kwargs)

    async def abandon(self, record_id: str, **kwargs: Any) -> bool:
        self.abandons += 1
        return await super().abandon(record_id, **kwargs)


class Stream:
    """An app streaming chunks on demand: ``tick()`` sends one after moving the clock; ``end()`` / ``fail()``."""

    def __init__(self, clock: SteppedClock, status: int = 200) -> None:
        self.clock = clock
        self.status = status
        self.calls = 0
        self.commands: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await receive()
        await send({"type": "http.response.start", "status": self.status, "headers": list(SSE)})
        n = 0
        while True:
            command, advance = await self.commands.get()
            self.clock.now += advance
            if command == "tick":
                await send({"type": "http.response.body", "body": f"data: {n}\n\n".encode(), "more_body": True})
                n += 1
            elif command == "keepalive":
                await send({"type": "http.response.body", "body": b"", "more_body": True})
            elif command == "fail":
                raise RuntimeError("the stream broke")
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return

    async def do(self, command: str, advance: float = 0.0) -> None:
        await self.commands.put((command, advance))
        for _ in range(20):
            await asyncio.sleep(0)


def middleware(app: Any, clock: SteppedClock, store: MemoryStore, **cfg: Any) -> IdempotencyMiddleware:
    return wrap(app, store, config=IdempotencyConfig(max_capture_duration=300.0, **cfg), clock=clock)


async def call(mw: Any, sink: list[dict[str, Any]] | None = None) -> tuple[int | None, dict[bytes, bytes], bytes]:
    answer = await post(mw, path="/events", sink=sink)
    return answer.status, answer.headers, answer.body


def only_record(store: MemoryStore) -> Any:
    (record,) = store._records.values()
    return record


@pytest.mark.parametrize("crossing", ["tick", "keepalive"])
async def test_an_endless_stream_is_replayed_as_omitted_once_past_the_limit(crossing: str) -> None:
    clock, store = SteppedClock(), CountingStore()
    app = Stream(clock)
    mw = middleware(app, clock, store)
    first_messages: list[dict[str, Any]] = []
    first = asyncio.create_task(call(mw, first_messages))
    await app.do("tick", 100.0)
    await app.do("tick", 150.0)  # 250 s: within the limit
    assert (await call(mw))[0] == 409
    assert only_record(store).state is State.IN_PROGRESS
    assert clock.heartbeats_waiting == 1

    await app.do(crossing, 100.0)  # 350 s: past max_capture_duration, the stream goes on
    record = only_record(store)
    assert (record.state, record.status, record.body, record.body_omitted) == (State.COMPLETED, 200, b"", True)
    assert clock.heartbeats_waiting == 0  # the heartbeat stopped with the completion
    status, headers, body = await call(mw)
    assert (status, body) == (200, b"")
    assert headers[b"idempotency-body-omitted"] == b"true"
    assert headers[b"idempotent-replayed"] == b"true"
    assert headers[b"x-stream"] == b"1"

    # The first client's stream goes on untouched, to its end; the record is not written again.
    await app.do("tick", 600.0)
    await app.do("end")
    status, _, body = await first
    expected = b"data: 0\n\ndata: 1\n\ndata: 2\n\n" + (b"data: 3\n\n" if crossing == "tick" else b"")
    assert (status, body) == (200, expected)
    assert [m.get("more_body", False) for m in first_messages if m["type"] == "http.response.body"][-1] is False
    assert app.calls == 1
    assert store.completions == 1
    assert (await call(mw))[1][b"idempotency-body-omitted"] == b"true"


async def test_a_stream_failing_or_cancelled_after_the_limit_keeps_its_record() -> None:
    for ending in ("fail", "cancel"):
        clock, store = SteppedClock(), CountingStore()
        app = Stream(clock)
        mw = middleware(app, clock, store)
        first = asyncio.create_task(call(mw))
        await app.do("tick", 400.0)
        assert only_record(store).state is State.COMPLETED
        if ending == "fail":
            await app.do("fail")
            with pytest.raises(RuntimeError):
                await first
        else:
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
        record = only_record(store)
        assert (record.state, record.body_omitted, store.completions, store.abandons) == (State.COMPLETED, True, 1, 0)


async def test_a_stream_to_release_is_still_released_at_its_end() -> None:
    clock, store = SteppedClock(), CountingStore()
    app = Stream(clock, status=429)
    mw = middleware(app, clock, store)
    first = asyncio.create_task(call(mw))
    await app.do("tick", 400.0)
    assert only_record(store).state is State.IN_PROGRESS  # not released early: a retry would run alongside
    await app.do("end")
    assert (await first)[0] == 429
    assert store._records == {}
    assert store.completions == 0


async def test_a_stream_ending_within_the_limit_is_stored_in_full() -> None:
    clock, store = SteppedClock(), CountingStore()
    app = Stream(clock)
    mw = middleware(app, clock, store)
    first = asyncio.create_task(call(mw))
    await app.do("tick", 299.0)
    await app.do("end", 5.0)  # an empty final message after the limit: the captured body is whole
    await first
    status, headers, body = await call(mw)
    assert (status, body) == (200, b"data: 0\n\n")
    assert b"idempotency-body-omitted" not in headers


async def test_the_warning_says_what_happens(caplog: pytest.LogCaptureFixture) -> None:
    clock, store = SteppedClock(), CountingStore()
    app = Stream(clock)
    mw = middleware(app, clock, store)
    with caplog.at_level(logging.WARNING, logger="stalwart"):
        first = asyncio.create_task(call(mw))
        await app.do("end")
        await first
    (warning,) = [r.getMessage() for r in caplog.records if "text/event-stream" in r.getMessage()]
    assert "max_capture_duration (300s)" in warning
    assert "body_omitted" in warning
