"""Instrumentation hooks (events to logs and metrics).

- :class:`~stalwart.LoggingHook` (in the core package): every event to the ``stalwart`` logger.
- :class:`OpenTelemetryMetrics`: circuit-breaker metrics through OpenTelemetry (needs the ``otel`` extra:
  ``pip install stalwart[otel]``; imported on first use, so this package imports without it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stalwart._events import LoggingHook

if TYPE_CHECKING:
    from ._otel import OpenTelemetryMetrics

__all__ = ["LoggingHook", "OpenTelemetryMetrics"]


def __getattr__(name: str) -> Any:
    if name == "OpenTelemetryMetrics":
        from ._otel import OpenTelemetryMetrics  # noqa: PLC0415 - the optional dependency is loaded on first use

        return OpenTelemetryMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
