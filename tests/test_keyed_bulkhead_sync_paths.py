"""KeyedBulkhead's inlined sync paths (``call_for``, ``call``, the sync decorator): a queued thread is handed the
shared slot when a call ends, a refusal by the shared limit or a failing function gives the key's permit back, and
keyword arguments reach both the key function and the function. No timing: threads hold slots on events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from stalwart import BulkheadFullError, KeyedBulkhead


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll until ``condition()`` holds (a state the other thread reaches; pytest-timeout bounds a hang)."""
    while not condition():
        time.sleep(0.001)


def assert_idle(bulkhead: KeyedBulkhead) -> None:
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.available) == (0, 0, stats.max_concurrent)
    for compartment in bulkhead._compartments.values():
        assert len(compartment.permits) == bulkhead.max_per_key
        assert not compartment.dead


def forms(bulkhead: KeyedBulkhead, fn: Callable[..., Any]) -> dict[str, Callable[[str], Any]]:
    decorated = bulkhead(fn)
    return {
        "decorator": lambda user: decorated(user),
        "call_for": lambda user: bulkhead.call_for(user, fn, user),
        "call": lambda user: bulkhead.call(fn, user),
    }


@pytest.mark.parametrize("form", ["decorator", "call_for", "call"])
def test_a_call_ending_hands_the_shared_slot_to_a_queued_thread(form: str) -> None:
    bulkhead = KeyedBulkhead("api", max_per_key=1, max_concurrent=1, max_queue=5, queue_timeout=None, key=lambda u: u)
    go = {"first": threading.Event(), "second": threading.Event()}
    entered = {"first": threading.Event(), "second": threading.Event()}

    def work(user: str) -> str:
        entered[user].set()
        go[user].wait()
        return user

    call = forms(bulkhead, work)[form]
    results: dict[str, str] = {}

    def worker(user: str) -> None:
        results[user] = call(user)

    first = threading.Thread(target=worker, args=("first",), daemon=True)
    first.start()
    assert entered["first"].wait(10)
    second = threading.Thread(target=worker, args=("second",), daemon=True)
    second.start()
    wait_until(lambda: bulkhead.statistics().queued == 1)  # the second waits for the shared slot
    assert bulkhead.active_for("second") == 1  # holding its key's permit meanwhile
    go["first"].set()  # the first call ends: its release must hand the slot over
    assert entered["second"].wait(10)
    go["second"].set()
    first.join(10)
    second.join(10)
    assert results == {"first": "first", "second": "second"}
    assert_idle(bulkhead)


@pytest.mark.parametrize("form", ["decorator", "call_for", "call"])
def test_a_refusal_by_the_shared_limit_gives_the_keys_permit_back(form: str) -> None:
    bulkhead = KeyedBulkhead("api", max_per_key=1, max_concurrent=1, max_queue=0, key=lambda u: u)
    call = forms(bulkhead, lambda user: user)[form]
    bulkhead.acquire_sync("holder")
    with pytest.raises(BulkheadFullError) as caught:
        call("u")
    assert type(caught.value) is BulkheadFullError  # the shared limit's refusal, not the compartment's
    assert bulkhead.active_for("u") == 0
    bulkhead.release("holder")
    assert call("u") == "u"
    assert_idle(bulkhead)


@pytest.mark.parametrize("form", ["decorator", "call_for", "call"])
def test_a_failing_function_gives_everything_back(form: str) -> None:
    bulkhead = KeyedBulkhead("api", max_per_key=1, max_concurrent=1, max_idle_keys=0, key=lambda u: u)

    def fail(user: str) -> None:
        assert bulkhead.active_for(user) == 1
        raise LookupError(user)

    call = forms(bulkhead, fail)[form]
    for _ in range(3):
        with pytest.raises(LookupError):
            call("u")
        assert_idle(bulkhead)
    assert bulkhead.statistics().keys == 0


def test_keyword_arguments_reach_the_key_function_and_the_function() -> None:
    bulkhead = KeyedBulkhead("api", max_per_key=1, max_concurrent=2, key=lambda a, *, user: user)
    seen: list[str] = []

    def work(a: int, *, user: str) -> tuple[int, str]:
        seen.append(user)
        assert bulkhead.active_for(user) == 1
        return a, user

    assert bulkhead(work)(1, user="x") == (1, "x")
    assert bulkhead.call(work, 2, user="y") == (2, "y")
    assert bulkhead.call_for("z", work, 3, user="z") == (3, "z")
    assert seen == ["x", "y", "z"]
    assert_idle(bulkhead)
