"""The OpenTelemetry state gauge reads a breaker's state as its statistics() and the health endpoint do.

The OPEN -> HALF_OPEN move is made when something looks: a call, statistics(), the health endpoint. The gauge read
``breaker.state``, which does not make the move, so a breaker no call reaches (a load balancer stopped sending
traffic) was exported as OPEN long after its open period ended, and an "open == 1" alert kept firing.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import stalwart as sw
from stalwart.instrumentation import OpenTelemetryMetrics
from stalwart.testing import FakeClock


def _state_gauge(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "stalwart.circuit_breaker.state":
                    return {
                        str((p.attributes or {})["circuit_breaker.state"]): int(p.value)  # type: ignore[attr-defined]
                        for p in metric.data.data_points
                    }
    raise AssertionError("no state gauge")


@pytest.mark.parametrize("wait", [29.0, 30.0, 31.0])
def test_gauge_follows_the_open_period_without_calls(wait: float) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    registry = sw.Registry()
    hook = OpenTelemetryMetrics(meter_provider=provider, registry=registry).install()
    try:
        clock = FakeClock()
        breaker = registry.breaker("idle", failure_threshold=1, reset_timeout=30.0, clock=clock)
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
        assert _state_gauge(reader)["open"] == 1
        clock.advance(wait)
        gauge = _state_gauge(reader)
        expected = breaker.statistics().state.value
        assert gauge[expected] == 1
        assert sum(gauge.values()) == 1
        assert gauge["open"] == (1 if wait < 30.0 else 0)
    finally:
        hook.uninstall()
        provider.shutdown()
