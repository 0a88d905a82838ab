"""Regression: a server-requested delay too long to represent was ignored, so the retry came *sooner*.

What was wrong: ``valid_retry_after`` treated ``math.inf`` and an ``int`` too large for a float as invalid and
returned ``None``, so ``RetryRules.decide`` fell back to the computed backoff and retried within a second or two,
while any large finite request (``1e300``, ``61`` with the default cap) gave up with ``"retry_after_too_long"``.
The bigger the server's request, the earlier the retry: a ``retry_after`` extractor answering ``math.inf`` ("do
not come back") or a huge ``Retry-After: 99999999999999999999999`` made stalwart hammer the server at once.
RFC 9111 §1.2.2 has a recipient treat an overflowing delta-seconds as the largest value it can represent, never
ignore it. Now such requests are ``math.inf``, longer than any ``max_retry_after`` (even ``math.inf``: waiting
forever is never worth it), and the call gives up at once with its last outcome.
"""

from __future__ import annotations

import math

import pytest

import stalwart as sw
from stalwart._retry_policy import RetryRules, valid_retry_after
from stalwart.testing import FakeClock


class Busy(Exception):
    pass


@pytest.mark.parametrize("requested", [math.inf, 10**400, 1e300, 61.0])
def test_a_longer_request_never_means_an_earlier_retry(requested: float) -> None:
    clock = FakeClock()
    calls = []

    def busy() -> None:
        calls.append(clock.monotonic())
        raise Busy

    retry = sw.Retry(on=Busy, retry_after=lambda exc: requested, clock=clock)
    with pytest.raises(Busy) as caught:
        retry.call(busy)
    assert len(calls) == 1
    assert clock.sleeps == []
    assert "max_retry_after" in caught.value.__notes__[-1]


@pytest.mark.parametrize("requested", [math.inf, 10**400])
def test_even_an_infinite_cap_does_not_wait_forever(requested: float) -> None:
    rules = RetryRules(max_retry_after=math.inf)
    decision = rules.decide(
        attempt=1, elapsed=0.0, deadline_remaining=None, previous_delay=0.0, rng=lambda: 0.5, retry_after=requested
    )
    assert (decision.retry, decision.reason) == (False, "retry_after_too_long")


def test_invalid_requests_are_still_ignored() -> None:
    for value in (math.nan, -1, -math.inf, True, "5", None):
        assert valid_retry_after(value) is None
    assert valid_retry_after(10**400) == math.inf
