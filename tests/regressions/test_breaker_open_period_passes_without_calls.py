"""An OPEN breaker whose open period has passed must not look OPEN forever to readers when no call arrives.

OPEN → HALF_OPEN is lazy (the first caller after ``reset_timeout`` makes it), but the health endpoint answered 503
for a ``critical`` breaker while its state read OPEN, so a load balancer took the instance out of rotation, no
call arrived, the breaker stayed OPEN, and the instance never came back (resilience4j's
``automaticTransitionFromOpenToHalfOpenEnabled``, Polly #481: reading the state makes the transition; turnstone
PR #152: "the circuit stays OPEN forever"). ``statistics()`` documents that it applies the rules at the current
time as a call would: it now makes the OPEN → HALF_OPEN transition (taking no probe), and the health status and
``critical_open()`` follow that, computed from the same snapshot as the document.
"""

from __future__ import annotations

import pytest

import stalwart as sw
from stalwart._breaker_link import BreakerLink
from stalwart._breaker_shared import FleetView
from stalwart.asgi import HealthApp
from stalwart.testing import FakeClock


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


def ok() -> str:
    return "ok"


MODELS = [
    pytest.param({"failure_threshold": 1}, id="consecutive"),
    pytest.param({"window": sw.CountWindow(4), "minimum_calls": 2}, id="count-window"),
    pytest.param({"window": sw.TimeWindow(10), "minimum_calls": 2}, id="time-window"),
]


def tripped(registry: sw.Registry, model: dict[str, object]) -> sw.CircuitBreaker:
    breaker = registry.breaker(
        "db", critical=True, reset_timeout=30.0, half_open_max_calls=2, success_threshold=2, **model
    )
    for _ in range(2):
        if breaker.state is sw.CircuitState.OPEN:
            break
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state is sw.CircuitState.OPEN
    return breaker


@pytest.mark.parametrize("model", MODELS)
def test_health_recovers_once_the_open_period_has_passed_without_any_call(model: dict[str, object]) -> None:
    clock = FakeClock()
    registry = sw.Registry(defaults={"clock": clock})
    breaker = tripped(registry, model)
    health = HealthApp(registry)

    clock.advance(29.0)
    assert health.render("/circuits")[0] == 503
    assert registry.critical_open() == ["db"]

    clock.advance(1.0)  # the open period has passed; nobody called
    status, _ = health.render("/circuits")
    assert status == 200
    assert registry.critical_open() == []
    stats = breaker.statistics()
    assert stats.state is sw.CircuitState.HALF_OPEN
    assert stats.half_open_probes == 0  # reading took no probe
    assert stats.retry_after is None

    # the calls that follow are the period's probes, all of them
    assert breaker.call(ok) == "ok"
    assert breaker.statistics().half_open_probes in (0, 1)
    assert breaker.call(ok) == "ok"
    assert breaker.state is sw.CircuitState.CLOSED


@pytest.mark.parametrize("model", MODELS)
def test_statistics_make_the_transition_a_call_would_make(model: dict[str, object]) -> None:
    clock = FakeClock()
    registry = sw.Registry(defaults={"clock": clock})
    breaker = tripped(registry, model)
    seen: list[sw.CircuitStateChanged] = []

    def hook(event: object) -> None:
        if isinstance(event, sw.CircuitStateChanged):
            seen.append(event)

    sw.add_hook(hook)
    try:
        clock.advance(30.0)
        assert breaker.statistics().state is sw.CircuitState.HALF_OPEN
    finally:
        sw.remove_hook(hook)
    assert [(e.from_state, e.to_state, e.reason) for e in seen] == [("open", "half_open", "reset_timeout")]
    # a probe failing re-opens it, with the backoff of a second opening
    with pytest.raises(Boom):
        breaker.call(fail)
    if breaker.state is not sw.CircuitState.OPEN:  # a rate model judges its two probes together
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.state is sw.CircuitState.OPEN
    assert breaker.statistics().openings == 2


def test_forced_open_stays_critical() -> None:
    clock = FakeClock()
    registry = sw.Registry(defaults={"clock": clock})
    breaker = registry.breaker("db", critical=True, reset_timeout=1.0)
    breaker.force_open()
    clock.advance(1000.0)
    assert HealthApp(registry).render("/circuits")[0] == 503
    assert registry.critical_open() == ["db"]


class _FakeStore:
    """A CircuitStore that keeps the link, so the test plays the fleet's answers."""

    flush_size = 1000

    def __init__(self) -> None:
        self.links: list[BreakerLink] = []

    def attach(self, link: BreakerLink) -> None:
        self.links.append(link)


def _fleet(state: sw.CircuitState, epoch: int, open_remaining: float = 0.0) -> FleetView:
    return FleetView(
        state, epoch, "consecutive_failures", None, open_remaining, 1, open_remaining, 0, False, 0, 0, 0, 0, 0
    )


def test_a_shared_breaker_past_its_fleet_open_period_is_not_reported_as_rejecting() -> None:
    """Shared through a store, the fleet decides OPEN → HALF_OPEN on a caller's demand: the reader does not move it,
    but the health status stops answering 503 once the fleet's open period has passed (the next call asks)."""
    clock = FakeClock()
    store = _FakeStore()
    registry = sw.Registry(defaults={"clock": clock})
    breaker = registry.breaker("db", critical=True, reset_timeout=30.0, store=store)
    (link,) = store.links
    link.begin()
    link.end(_fleet(sw.CircuitState.OPEN, 7, open_remaining=30.0))
    assert breaker.state is sw.CircuitState.OPEN
    assert HealthApp(registry).render("/circuits")[0] == 503
    clock.advance(30.0)
    assert HealthApp(registry).render("/circuits")[0] == 200
    assert registry.critical_open() == []
    assert breaker.state is sw.CircuitState.OPEN  # the fleet's state, moved by the fleet only
    with pytest.raises(sw.CircuitOpenError) as caught:  # the next call asks the fleet for a probe permit
        breaker.call(ok)
    assert caught.value.retry_after is None
    assert link.begin().demand == 1
