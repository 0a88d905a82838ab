"""A caller cancelled while a hedged call is throwing results away still has every one of them thrown away.

The race hands each result nobody will get (a loser that answered anyway, a rejected result, the winner of a
cancelled call) to ``on_discard`` / closes each response. A cancellation arriving while one of them was being
discarded (an async ``on_discard`` such as ``Response.aclose``, a drain of a small body) ended the clean-up there:
the results after it were never discarded (the winner of the cancelled call included; with the transport, the
other answered losers' responses stayed open, their connections out of the pool), and a rejected result that was
about to replace the one being discarded was lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from stalwart import Backoff, Hedge, Jitter
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.testing import FakeClock

NO_JITTER = Backoff.exponential(initial=1.0, multiplier=2.0, max_delay=60.0, jitter=Jitter.NONE)


async def turns(n: int = 30) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class SlowDiscard:
    """An async ``on_discard`` that waits for ``gate``; records what it started and what it finished."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[Any] = []
        self.finished: list[Any] = []

    async def __call__(self, result: Any) -> None:
        self.started.append(result)
        await self.gate.wait()
        self.finished.append(result)


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def test_hedge_cancelled_while_discarding_a_loser_still_discards_the_winner() -> None:
    clock = FakeClock()
    discard = SlowDiscard()
    answers: dict[int, asyncio.Future[str]] = {}

    async def attempt(n: int) -> str:
        answers[n] = asyncio.get_running_loop().create_future()
        try:
            return await answers[n]
        except asyncio.CancelledError:
            return f"late-{n}"  # answered just as it was cancelled

    numbers = iter(range(1, 10))
    hedge = Hedge(0.0, clock=clock, on_discard=discard)
    task = asyncio.ensure_future(hedge.run(lambda: attempt(next(numbers))))
    await turns()
    answers[2].set_result("win-2")  # the hedge wins; the primary answers anyway and is being discarded
    await turns()
    assert discard.started == ["late-1"]
    task.cancel()  # the caller goes away meanwhile: it will never see win-2
    await turns()
    discard.gate.set()
    await turns()
    assert task.cancelled()
    assert discard.started == ["late-1", "win-2"]
    assert discard.finished == ["win-2"]  # late-1's discard was cut by the cancellation, win-2's ran
    assert not others()


async def test_hedge_cancelled_while_discarding_keeps_the_result_that_replaces_it() -> None:
    discard = SlowDiscard()
    numbers = iter(range(1, 10))
    release = asyncio.Event()

    async def attempt() -> str:
        n = next(numbers)
        if n > 2:
            await release.wait()
        return f"rejected-{n}"

    hedge = Hedge(3600.0, max_hedged=3, on_result=lambda r: True, on_discard=discard, clock=FakeClock())
    task = asyncio.ensure_future(hedge.run(attempt))
    await turns()  # attempt 1 rejected (kept), attempt 2 started at once and rejected: attempt 1 is discarded
    assert discard.started == ["rejected-1"]
    task.cancel()
    await turns()
    discard.gate.set()
    await turns()
    assert task.cancelled()
    assert discard.started == ["rejected-1", "rejected-2"]  # rejected-2 was not lost
    assert not others()


class Gate:
    def __init__(self) -> None:
        self.event = asyncio.Event()


class SlowBody(httpx.AsyncByteStream):
    """A small body (content-length 1) whose bytes come when ``gate`` opens; records its closing."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.closed = False

    async def __aiter__(self) -> Any:
        await self.gate.event.wait()
        yield b"x"

    async def aclose(self) -> None:
        self.closed = True


class AllAnswerTogether(httpx.AsyncBaseTransport):
    """Every attempt answers when ``go`` is set, all in the same turn of the loop."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.go = asyncio.Event()
        self.bodies: dict[int, SlowBody] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        number = int(request.headers["stalwart-attempt"])
        await self.go.wait()
        body = self.bodies[number] = SlowBody(self.gate)
        return httpx.Response(200, headers={"content-length": "1"}, stream=body)


async def test_http_hedge_cancelled_while_draining_a_loser_closes_every_response() -> None:
    gate = Gate()
    inner = AllAnswerTogether(gate)
    config = ResilienceConfig(backoff=NO_JITTER, hedge=Hedge(0.0, max_hedged=2))
    transport = AsyncResilientTransport(inner, config=config, registry=Registry(), clock=FakeClock())
    async with httpx.AsyncClient(transport=transport) as client:
        task = asyncio.ensure_future(client.get("https://api.example.com/items"))
        await turns()
        inner.go.set()  # attempt 1 wins; attempts 2 and 3 answered too and are drained before being closed
        await turns()
        assert not task.done()  # draining attempt 2's body
        task.cancel()
        await turns()
        gate.event.set()
        await turns()
        assert task.cancelled()
    assert sorted(inner.bodies) == [1, 2, 3]
    assert {n: body.closed for n, body in inner.bodies.items()} == {1: True, 2: True, 3: True}
    assert not others()
