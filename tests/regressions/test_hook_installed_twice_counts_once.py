"""Regression: ``OpenTelemetryMetrics.install()`` called twice counted every call twice.

What was wrong: ``install()`` was ``add_hook(self)``, and ``add_hook`` installs a hook as often as it is given, so a
second ``install()`` (an app factory run twice, a test fixture and the app both installing the process's metrics
hook, a reload) made every ``CircuitCallRecorded`` add 2 to ``stalwart.circuit_breaker.calls``, every transition 2
to ``state_changes`` and every duration two histogram points: the dashboards doubled without any error, and one
``uninstall()`` left half of it installed. OpenTelemetry's own instrumentors make the same call idempotent
(``BaseInstrumentor.instrument()`` a second time logs "Attempting to instrument while already instrumented" and does
nothing). Now ``install()`` installs the hook once, whether it was installed by ``install()`` or by
``sw.add_hook``, and one ``uninstall()`` removes it.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import stalwart as sw
from stalwart import _events
from stalwart.instrumentation import OpenTelemetryMetrics
from stalwart.testing import FakeClock


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


def calls_counted(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    assert data is not None
    total = 0
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "stalwart.circuit_breaker.calls":
                    total += sum(int(point.value) for point in metric.data.data_points)  # type: ignore[union-attr]
    return total


@pytest.mark.parametrize("first", ["install", "add_hook"])
def test_install_twice_counts_each_call_once(reader: InMemoryMetricReader, first: str) -> None:
    provider = MeterProvider(metric_readers=[reader])
    hook = OpenTelemetryMetrics(meter_provider=provider, registry=sw.Registry())
    if first == "install":
        hook.install()
    else:
        sw.add_hook(hook)
    try:
        assert hook.install() is hook
        assert sum(1 for installed in _events._hooks if installed is hook) == 1
        breaker = sw.CircuitBreaker(name="twice", clock=FakeClock())
        breaker.call(lambda: None)
        assert calls_counted(reader) == 1
    finally:
        hook.uninstall()
    assert hook not in _events._hooks  # one uninstall() removes it
    provider.shutdown()
