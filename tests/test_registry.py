"""Registry: get-or-create, conflicts, templates, snapshot (the health JSON) and reset_all."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


def test_default_registry_is_exported() -> None:
    assert isinstance(sw.registry, sw.Registry)


def test_breaker_get_or_create_returns_the_same_instance() -> None:
    reg = sw.Registry()
    a = reg.breaker("payments", failure_threshold=3)
    assert reg.breaker("payments") is a
    assert reg.breaker("payments", failure_threshold=3) is a
    assert reg.breaker("payments", reset_timeout=30.0) is a  # equal to the existing (default) value
    assert reg.breaker("payments", reset_timeout=timedelta(seconds=30)) is a  # compared after normalisation
    assert reg.get("payments") is a
    assert reg.get("other") is None
    assert reg.breakers == {"payments": a}


def test_conflicting_configuration_is_an_error() -> None:
    reg = sw.Registry()
    reg.breaker("payments", failure_threshold=3, on=Boom)
    with pytest.raises(ValueError, match=r"payments.*failure_threshold"):
        reg.breaker("payments", failure_threshold=4)
    with pytest.raises(ValueError, match="on"):
        reg.breaker("payments", on=KeyError)


def test_invalid_configuration_is_reported_even_for_an_existing_breaker() -> None:
    reg = sw.Registry()
    reg.breaker("x")
    with pytest.raises(ValueError, match="success_threshold"):
        reg.breaker("x", success_threshold=10)
    with pytest.raises(TypeError):
        reg.breaker("x", no_such_option=1)


def test_concurrent_get_or_create_yields_one_instance() -> None:
    reg = sw.Registry()
    start = threading.Event()

    def get() -> sw.CircuitBreaker:
        start.wait(10)
        return reg.breaker("shared", failure_threshold=2)

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(get) for _ in range(64)]
        start.set()
        instances = {id(f.result(10)) for f in futures}
    assert len(instances) == 1


def test_defaults_and_templates() -> None:
    reg = sw.Registry(
        defaults={"failure_threshold": 10, "reset_timeout": 5.0},
        templates={"payments": {"failure_threshold": 2, "critical": True}},
    )
    plain = reg.breaker("plain")
    assert (plain.config.failure_threshold, plain.config.reset_timeout, plain.critical) == (10, 5.0, False)
    pay = reg.breaker("stripe", template="payments", reset_timeout=1.0)
    assert (pay.config.failure_threshold, pay.config.reset_timeout, pay.critical) == (2, 1.0, True)
    assert reg.breaker("stripe", template="payments") is pay
    with pytest.raises(ValueError, match="failure_threshold"):
        reg.breaker("plain", template="payments")
    with pytest.raises(KeyError, match="nope"):
        reg.breaker("x", template="nope")


def test_register_and_remove() -> None:
    reg = sw.Registry()
    mine = sw.CircuitBreaker("mine")
    reg.register(mine)
    reg.register(mine)  # idempotent for the same instance
    assert reg.breaker("mine") is mine
    with pytest.raises(ValueError, match="mine"):
        reg.register(sw.CircuitBreaker("mine"))
    with pytest.raises(TypeError):
        reg.register(object())  # type: ignore[arg-type]
    reg.remove("mine")
    assert reg.get("mine") is None


def test_bulkhead_get_or_create_and_conflict() -> None:
    reg = sw.Registry()
    reads = reg.bulkhead("reads", max_concurrent=50)
    assert isinstance(reads, sw.Bulkhead)
    assert reg.bulkhead("reads") is reads
    assert reg.bulkhead("reads", max_concurrent=50, max_queue=100) is reads
    assert reg.get_bulkhead("reads") is reads
    with pytest.raises(ValueError, match="max_concurrent"):
        reg.bulkhead("reads", max_concurrent=20)
    # breakers and bulkheads have separate namespaces (a per-host breaker and bulkhead share the host's name)
    assert reg.breaker("reads").name == "reads"


def test_snapshot_shape_and_status() -> None:
    clock = FakeClock()
    reg = sw.Registry(defaults={"clock": clock})
    db = reg.breaker("db", failure_threshold=1, reset_timeout=30.0)
    reg.breaker("cache")
    reg.bulkhead("reads", max_concurrent=5)
    assert reg.snapshot() == {
        "status": "ok",
        "circuits": {
            "cache": {"state": "closed", "failure_rate": None, "slow_call_rate": None, "calls": 0, "retry_after": None},
            "db": {"state": "closed", "failure_rate": None, "slow_call_rate": None, "calls": 0, "retry_after": None},
        },
        "bulkheads": {"reads": {"active": 0, "queued": 0, "available": 5}},
    }
    with pytest.raises(Boom):
        db.call(fail)
    clock.advance(10.0)
    snapshot = reg.snapshot()
    assert snapshot["status"] == "degraded"
    assert snapshot["circuits"]["db"] == {
        "state": "open",
        "failure_rate": None,
        "slow_call_rate": None,
        "calls": 0,
        "retry_after": 20.0,
    }
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert reg.circuits_snapshot() == {"status": "degraded", "circuits": snapshot["circuits"]}
    assert reg.bulkheads_snapshot() == snapshot["bulkheads"]


def test_bulkhead_snapshot_counts_active_calls() -> None:
    reg = sw.Registry()
    bulkhead = reg.bulkhead("writes", max_concurrent=2)
    bulkhead.acquire_sync()  # type: ignore[attr-defined]
    try:
        assert reg.bulkheads_snapshot() == {"writes": {"active": 1, "queued": 0, "available": 1}}
    finally:
        bulkhead.release()  # type: ignore[attr-defined]


def test_critical_open_and_reset_all() -> None:
    reg = sw.Registry()
    critical = reg.breaker("db", failure_threshold=1, critical=True)
    other = reg.breaker("search", failure_threshold=1)
    assert reg.critical_open() == []
    for breaker in (critical, other):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert reg.critical_open() == ["db"]
    critical.transition_to("half_open")
    assert reg.critical_open() == []
    critical.force_open()
    assert reg.critical_open() == ["db"]
    reg.reset_all()
    assert critical.state is other.state is sw.CircuitState.CLOSED
    assert reg.snapshot()["status"] == "ok"


def test_clear() -> None:
    reg = sw.Registry()
    reg.breaker("a")
    reg.bulkhead("b")
    reg.clear()
    assert reg.breakers == {}
    assert reg.bulkheads == {}
    assert "Registry" in repr(reg)
