"""OpenTelemetry metrics of the circuit breaker, read back through the SDK's in-memory reader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import stalwart as sw
from stalwart.instrumentation import OpenTelemetryMetrics
from stalwart.testing import FakeClock


class Boom(Exception):
    pass


def _raise() -> None:
    raise Boom


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def registry() -> sw.Registry:
    return sw.Registry()


@pytest.fixture
def otel(reader: InMemoryMetricReader, registry: sw.Registry) -> Iterator[OpenTelemetryMetrics]:
    provider = MeterProvider(metric_readers=[reader])
    hook = OpenTelemetryMetrics(meter_provider=provider, registry=registry).install()
    yield hook
    hook.uninstall()
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """``{metric name: [(attributes, value or histogram point)]}`` of one collection."""
    data = reader.get_metrics_data()
    result: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    if data is None:  # nothing recorded or observed
        return result
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "stalwart"
            for metric in scope.metrics:
                result[metric.name] = [
                    (dict(p.attributes or {}), getattr(p, "value", p)) for p in metric.data.data_points
                ]
    return result


@pytest.mark.usefixtures("otel")
def test_calls_by_outcome_durations_and_transitions(reader: InMemoryMetricReader, registry: sw.Registry) -> None:
    clock = FakeClock()
    breaker = registry.breaker("payments", failure_threshold=2, exclude=KeyError, clock=clock)

    def slow_ok() -> str:
        clock.advance(0.5)
        return "ok"

    breaker.call(slow_ok)
    breaker.call(slow_ok)
    with pytest.raises(KeyError):
        breaker.call(lambda: {}["missing"])
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(_raise)
    with pytest.raises(sw.CircuitOpenError):
        breaker.call(slow_ok)

    metrics = points(reader)
    calls = {attrs["circuit_breaker.outcome"]: value for attrs, value in metrics["stalwart.circuit_breaker.calls"]}
    assert calls == {"success": 2, "ignored": 1, "failure": 2, "rejected": 1}
    assert all(a["circuit_breaker.name"] == "payments" for a, _ in metrics["stalwart.circuit_breaker.calls"])

    durations = {a["circuit_breaker.outcome"]: p for a, p in metrics["stalwart.circuit_breaker.call.duration"]}
    assert durations["success"].count == 2
    assert durations["success"].sum == pytest.approx(1.0)
    assert durations["failure"].count == 2
    assert "ignored" not in durations

    changes = metrics["stalwart.circuit_breaker.state_changes"]
    assert changes == [({"circuit_breaker.name": "payments", "circuit_breaker.state": "open"}, 1)]

    state = {a["circuit_breaker.state"]: v for a, v in metrics["stalwart.circuit_breaker.state"]}
    assert state == {
        "closed": 0,
        "open": 1,
        "half_open": 0,
        "disabled": 0,
        "metrics_only": 0,
        "forced_open": 0,
    }


@pytest.mark.usefixtures("otel")
def test_rate_gauges(reader: InMemoryMetricReader, registry: sw.Registry) -> None:
    clock = FakeClock()
    rates = registry.breaker(
        "search",
        window=sw.CountWindow(4),
        minimum_calls=4,
        slow_call_duration=1.0,
        failure_rate_threshold=80.0,
        clock=clock,
    )
    registry.breaker("consecutive")
    for fails in (False, True, False, False):
        if fails:
            with pytest.raises(Boom):
                rates.call(_raise)
        else:
            rates.call(clock.advance, 1.0 if not fails else 0.0)
    metrics = points(reader)
    assert metrics["stalwart.circuit_breaker.failure_rate"] == [({"circuit_breaker.name": "search"}, 25.0)]
    assert metrics["stalwart.circuit_breaker.slow_call_rate"] == [({"circuit_breaker.name": "search"}, 75.0)]
    window = {a["circuit_breaker.name"]: v for a, v in metrics["stalwart.circuit_breaker.window.calls"]}
    assert window == {"consecutive": 0, "search": 4}


def test_uninstalled_hook_records_nothing(reader: InMemoryMetricReader, registry: sw.Registry) -> None:
    provider = MeterProvider(metric_readers=[reader])
    hook = OpenTelemetryMetrics(meter_provider=provider, registry=registry)  # created, never installed
    breaker = registry.breaker("quiet")
    breaker.call(lambda: None)
    metrics = points(reader)
    assert "stalwart.circuit_breaker.calls" not in metrics
    assert metrics["stalwart.circuit_breaker.window.calls"] == [({"circuit_breaker.name": "quiet"}, 1)]  # gauges
    assert hook.registry is registry
    provider.shutdown()


def test_bulkhead_rejections_are_not_breaker_calls(otel: OpenTelemetryMetrics, reader: InMemoryMetricReader) -> None:
    otel(sw.CallRejected("reads", "bulkhead_full"))
    assert "stalwart.circuit_breaker.calls" not in points(reader)
    assert "OpenTelemetryMetrics" in repr(otel)


def test_default_registry_and_lazy_import() -> None:
    import stalwart.instrumentation as instrumentation

    assert instrumentation.LoggingHook is sw.LoggingHook
    with pytest.raises(AttributeError):
        instrumentation.Nope  # type: ignore[attr-defined]  # noqa: B018
    hook = OpenTelemetryMetrics(meter_provider=MeterProvider())
    assert hook.registry is sw.registry
