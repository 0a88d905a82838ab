"""``OpenTelemetryMetrics``: circuit-breaker metrics through the OpenTelemetry metrics API (the ``otel`` extra).

The seed's first exercise, "a circuit breaker with monitoring metrics", with resilience4j's metric set in
OpenTelemetry naming. It is an event hook (counters and the duration histogram are fed by the breaker's events)
plus observable gauges read from a :class:`~stalwart.Registry` at each collection (state and rates).

================================================ ========= ====================== ==================================
instrument                                       unit      kind                   attributes
================================================ ========= ====================== ==================================
``stalwart.circuit_breaker.calls``               ``{call}`` counter               ``circuit_breaker.name``,
                                                                                  ``circuit_breaker.outcome``
                                                                                  (``success``, ``failure``,
                                                                                  ``ignored``, ``rejected``)
``stalwart.circuit_breaker.call.duration``       ``s``     histogram              ``circuit_breaker.name``,
                                                                                  ``circuit_breaker.outcome``
                                                                                  (``success``, ``failure``)
``stalwart.circuit_breaker.state_changes``       ``{transition}`` counter         ``circuit_breaker.name``,
                                                                                  ``circuit_breaker.state`` (entered)
``stalwart.circuit_breaker.state``               ``1``     gauge (observable)     ``circuit_breaker.name``,
                                                                                  ``circuit_breaker.state``: 1 for the
                                                                                  current state, 0 for the others
``stalwart.circuit_breaker.failure_rate``        ``%``     gauge (observable)     ``circuit_breaker.name`` (only
                                                                                  while the breaker judges a rate)
``stalwart.circuit_breaker.slow_call_rate``      ``%``     gauge (observable)     ``circuit_breaker.name`` (idem)
``stalwart.circuit_breaker.window.calls``        ``{call}`` gauge (observable)    ``circuit_breaker.name``
================================================ ========= ====================== ==================================

Attributes are low-cardinality by construction: breaker names (one per dependency or host) and closed sets of
values. The duration histogram advises bucket boundaries in seconds (:data:`DURATION_BUCKETS`); a view configured
on the meter provider overrides them. Call durations are measured only while a hook is installed, which installing
this one does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from stalwart import __version__
from stalwart._breaker_settings import CircuitState
from stalwart._events import (
    CallRejected,
    CircuitCallRecorded,
    CircuitStateChanged,
    Event,
    add_hook_once,
    remove_hook,
)

if TYPE_CHECKING:
    from stalwart._registry import Registry

__all__ = ["OpenTelemetryMetrics"]

NAME = "circuit_breaker.name"
OUTCOME = "circuit_breaker.outcome"
STATE = "circuit_breaker.state"

_STATES = tuple(state.value for state in CircuitState)

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)
"""Bucket boundaries (seconds) of the call-duration histogram: OpenTelemetry's HTTP duration buckets up to 10 s, then
30 s and 60 s (the SDK's default boundaries, 0 to 10,000, suit milliseconds, not seconds)."""


class OpenTelemetryMetrics:
    """Export circuit-breaker metrics through OpenTelemetry (instrument names and attributes in the module table).

    Args:
        meter_provider: the provider to create the meter with (default: the global one,
            ``opentelemetry.metrics.get_meter_provider()``).
        registry: the registry whose breakers the observable gauges report (default: ``stalwart.registry``,
            looked up at each collection). Counters and the histogram cover every breaker, registered or not.

    Install it with ``metrics.install()`` (idempotent) or ``sw.add_hook(metrics)``; remove it with ``uninstall()``.
    """

    __slots__ = ("_calls", "_duration", "_registry", "_transitions", "meter")

    def __init__(self, *, meter_provider: MeterProvider | None = None, registry: Registry | None = None) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self.meter = provider.get_meter("stalwart", __version__)
        self._registry = registry
        meter = self.meter
        self._calls = meter.create_counter(
            "stalwart.circuit_breaker.calls", unit="{call}", description="Calls through a circuit breaker, by outcome"
        )
        self._duration = meter.create_histogram(
            "stalwart.circuit_breaker.call.duration",
            unit="s",
            description="Duration of calls a breaker admitted",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._transitions = meter.create_counter(
            "stalwart.circuit_breaker.state_changes", unit="{transition}", description="Circuit breaker transitions"
        )
        meter.create_observable_gauge(
            "stalwart.circuit_breaker.state",
            callbacks=[self._observe_state],
            unit="1",
            description="1 for the breaker's current state, 0 for the others",
        )
        meter.create_observable_gauge(
            "stalwart.circuit_breaker.failure_rate",
            callbacks=[self._observe_failure_rate],
            unit="%",
            description="Failure rate over the breaker's window",
        )
        meter.create_observable_gauge(
            "stalwart.circuit_breaker.slow_call_rate",
            callbacks=[self._observe_slow_call_rate],
            unit="%",
            description="Slow-call rate over the breaker's window",
        )
        meter.create_observable_gauge(
            "stalwart.circuit_breaker.window.calls",
            callbacks=[self._observe_calls],
            unit="{call}",
            description="Calls in the breaker's window (since the last transition for the consecutive model)",
        )

    def __repr__(self) -> str:
        return f"OpenTelemetryMetrics(registry={self._registry!r})"

    @property
    def registry(self) -> Registry:
        """The registry the gauges report."""
        if self._registry is not None:
            return self._registry
        from stalwart._registry import registry  # noqa: PLC0415 - the process-wide default, looked up late

        return registry

    def install(self) -> OpenTelemetryMetrics:
        """Install this hook for every event of the process; returns ``self``.

        Idempotent: a hook already installed (by ``install()`` or ``sw.add_hook``) is not installed again, so that
        no event is counted twice; one :meth:`uninstall` removes it.
        """
        add_hook_once(self)
        return self

    def uninstall(self) -> None:
        """Remove this hook."""
        remove_hook(self)

    def __call__(self, event: Event) -> None:
        """Record one event (the hook protocol)."""
        if isinstance(event, CircuitCallRecorded):
            attributes = {NAME: event.name, OUTCOME: event.outcome}
            self._calls.add(1, attributes)
            if event.duration is not None and event.outcome != "ignored":
                self._duration.record(event.duration, attributes)
        elif isinstance(event, CallRejected):
            if event.reason == "circuit_open":
                self._calls.add(1, {NAME: event.name, OUTCOME: "rejected"})
        elif isinstance(event, CircuitStateChanged):
            self._transitions.add(1, {NAME: event.name, STATE: event.to_state})

    # --- observable gauges ---------------------------------------------------------------------------------------

    def _observe_state(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, breaker in sorted(self.registry.breakers.items()):
            # statistics(), not .state: it applies the open period's end as a call would, so a breaker no call reaches
            # reads HALF_OPEN once its open period is over rather than OPEN until the next call
            current = breaker.statistics().state.value
            for state in _STATES:
                yield Observation(1 if state == current else 0, {NAME: name, STATE: state})

    def _observe_failure_rate(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, breaker in sorted(self.registry.breakers.items()):
            rate = breaker.statistics().failure_rate
            if rate is not None:
                yield Observation(rate, {NAME: name})

    def _observe_slow_call_rate(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, breaker in sorted(self.registry.breakers.items()):
            rate = breaker.statistics().slow_call_rate
            if rate is not None:
                yield Observation(rate, {NAME: name})

    def _observe_calls(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, breaker in sorted(self.registry.breakers.items()):
            yield Observation(breaker.statistics().calls, {NAME: name})
