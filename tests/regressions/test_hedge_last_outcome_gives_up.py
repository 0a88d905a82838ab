"""Regression: a hedged call that gave up raised an *older* attempt's exception instead of the latest outcome.

What was wrong: ``_hedge_race.Race`` kept the last handled outcome in two fields, ``last_exc`` and ``last_result``,
and a rejected result (``on_result`` true) replaced ``last_result`` without clearing ``last_exc``. When one attempt
failed with an exception ``on`` covers and a later one returned a rejected result, the call gave up by raising the
older exception (with a give-up note) although the last outcome was the result — unlike ``Retry``, whose last
attempt's outcome is always the call's. Attempts ending together were also judged in the order they *started*,
and the HTTP transport's race (``httpx/_hedging._race``) judged them in the arbitrary order of a set.

The rule now, for both: outcomes are judged in the order the attempts ended; the first answer to end wins, and
when none answers, the last outcome to end is the call's (its exception raised with a note, or its result
returned), whatever kinds the earlier outcomes were.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from stalwart import Hedge
from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilienceConfig
from stalwart.testing import FakeClock


class Busy(Exception):
    pass


def _hedge(**kwargs: Any) -> Hedge:
    return Hedge(10.0, max_hedged=1, on=Busy, on_result=lambda result: result == "later", clock=FakeClock(), **kwargs)


async def test_a_rejected_result_after_a_handled_exception_is_the_outcome() -> None:
    calls = 0
    discarded: list[Any] = []

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Busy("first")  # handled: the next attempt starts at once
        return "later"  # rejected, and the last attempt allowed

    assert await _hedge(on_discard=discarded.append).run(attempt) == "later"
    assert calls == 2
    assert discarded == []


async def test_a_handled_exception_after_a_rejected_result_is_the_outcome() -> None:
    calls = 0
    discarded: list[Any] = []

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            return "later"
        raise Busy("second")

    with pytest.raises(Busy, match="second") as caught:
        await _hedge(on_discard=discarded.append).run(attempt)
    assert discarded == ["later"]  # the result thrown away is handed to on_discard
    assert "gave up after 2 attempts" in caught.value.__notes__[-1]


async def test_outcomes_ending_together_are_judged_in_the_order_they_ended() -> None:
    release = asyncio.Event()
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
            raise Busy("the primary ended last")
        release.set()  # the primary wakes up after this attempt has ended, before the caller's task runs
        return "later"

    hedge = Hedge(0.0, max_hedged=1, on=Busy, on_result=lambda result: result == "later")
    with pytest.raises(Busy, match="ended last"):
        await hedge.run(attempt)


class _Together(httpx.AsyncBaseTransport):
    """Attempt 1 waits until attempt 2 has ended with a 503, then fails with a transient error: both end in one
    turn of the loop, attempt 1 last."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers["stalwart-attempt"] == "1":
            await self.release.wait()
            raise httpx.ReadError("the primary ended last")
        self.release.set()
        return httpx.Response(503)


async def test_the_transport_race_gives_up_with_the_outcome_that_ended_last() -> None:
    for _ in range(10):  # (a set's order depends on the tasks' ids: several runs make the old order show)
        config = ResilienceConfig(hedge=0.0, max_attempts=1)
        transport = AsyncResilientTransport(_Together(), config=config, registry=Registry())
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ReadError, match="ended last"):
                await client.get("https://api.example.com/items")
