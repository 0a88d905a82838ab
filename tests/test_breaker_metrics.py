"""OpenTelemetry metrics of the circuit breaker, read back through the SDK's in-memory reader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

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
    import stalwart.instrumentation as instrumentation  # noqa: PLC0415 - the lazy attribute access is under test

    assert instrumentation.LoggingHook is sw.LoggingHook
    with pytest.raises(AttributeError):
        instrumentation.Nope  # type: ignore[attr-defined]  # noqa: B018
    hook = OpenTelemetryMetrics(meter_provider=MeterProvider())
    assert hook.registry is sw.registry


def test_the_documented_prometheus_scrape(registry: sw.Registry) -> None:
    """OpenTelemetryMetrics -> PrometheusMetricReader -> prometheus_client.generate_latest(), as docs show (no
    server: the exporter's collector is registered in a private CollectorRegistry)."""
    scrape_registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=scrape_registry)])
    hook = OpenTelemetryMetrics(meter_provider=provider, registry=registry).install()
    try:
        clock = FakeClock()
        breaker = registry.breaker("payments", failure_threshold=1, window=None, clock=clock)
        breaker.call(lambda: None)
        with pytest.raises(Boom):
            breaker.call(_raise)
        with pytest.raises(sw.CircuitOpenError):
            breaker.call(lambda: None)
        rates = registry.breaker("search", window=sw.CountWindow(2), minimum_calls=2, slow_call_duration=1.0)
        rates.call(lambda: None)
        rates.call(lambda: None)
        text = generate_latest(scrape_registry).decode()
    finally:
        hook.uninstall()
        provider.shutdown()
    lines = text.splitlines()

    def sample(prefix: str) -> str:
        found = [line for line in lines if line.startswith(prefix)]
        assert found, f"{prefix!r} not in the scrape:\n{text}"
        return found[0]

    for outcome, value in (("success", "1.0"), ("failure", "1.0"), ("rejected", "1.0")):
        line = sample(
            f'stalwart_circuit_breaker_calls_total{{circuit_breaker_name="payments",circuit_breaker_outcome="{outcome}"'
        )
        assert line.endswith(f" {value}")
    assert sample("stalwart_circuit_breaker_call_duration_seconds_bucket{")
    boundaries = {line.split('le="')[1].split('"')[0] for line in lines if "_call_duration_seconds_bucket{" in line}
    assert {"0.005", "0.25", "1.0", "10.0", "+Inf"} <= boundaries  # seconds, not the SDK's millisecond defaults
    assert sample('stalwart_circuit_breaker_state_changes_total{circuit_breaker_name="payments"')
    open_state = sample('stalwart_circuit_breaker_state{circuit_breaker_name="payments",circuit_breaker_state="open"')
    assert open_state.endswith(" 1.0")
    assert sample('stalwart_circuit_breaker_failure_rate_percent{circuit_breaker_name="search"').endswith(" 0.0")
    assert sample('stalwart_circuit_breaker_slow_call_rate_percent{circuit_breaker_name="search"')
    assert sample('stalwart_circuit_breaker_window_calls{circuit_breaker_name="payments"')
