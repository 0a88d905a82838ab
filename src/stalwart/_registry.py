"""Named circuit breakers and bulkheads, and the JSON snapshot the health endpoint serves.

``stalwart.registry`` is the process-wide default :class:`Registry`; the httpx transport and the ASGI health
endpoint use it unless given another. ``breaker(name, **config)`` and ``bulkhead(name, **config)`` get or create:
the first call creates the instance, later calls return the same one, and a later call whose configuration
contradicts the existing instance raises :class:`ValueError` (two parts of a program silently sharing a breaker
configured two ways is a bug).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ._breaker import CircuitBreaker, CircuitState, CircuitStatistics
from ._breaker_link import check_store
from ._bulkhead import Bulkhead

__all__ = ["Registry", "registry"]

_OPENISH = frozenset({CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.FORCED_OPEN})
_MISSING = object()


def _rejecting(stats: CircuitStatistics) -> bool:
    """Whether a breaker rejects its next call: FORCED_OPEN, or OPEN with part of its open period left."""
    state = stats.state
    if state is CircuitState.FORCED_OPEN:
        return True
    return state is CircuitState.OPEN and stats.retry_after is not None and stats.retry_after > 0.0


def _conflicts(existing: object, candidate: object, keys: list[str]) -> list[str]:
    """The keys whose normalised values differ between two instances' configurations."""
    left = getattr(existing, "config", existing)
    right = getattr(candidate, "config", candidate)
    return [key for key in keys if getattr(left, key, _MISSING) != getattr(right, key, _MISSING)]


class Registry:
    """Named circuit breakers and bulkheads.

    Args:
        defaults: settings applied to every breaker this registry creates (``CircuitBreaker`` keyword arguments).
        templates: named sets of breaker settings, selected with ``breaker(name, template="...")``; a template
            is applied over ``defaults``, and the call's own settings over the template.

    Thread-safe: get-or-create is atomic, so concurrent callers asking for the same name get the same instance.

    Raises:
        TypeError: ``defaults`` or a template holds a setting ``CircuitBreaker`` does not take (checked when a
            breaker is created).
    """

    __slots__ = ("_breakers", "_bulkheads", "_defaults", "_lock", "_templates")

    def __init__(
        self,
        *,
        defaults: Mapping[str, Any] | None = None,
        templates: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._defaults: dict[str, Any] = dict(defaults or {})
        self._templates: dict[str, dict[str, Any]] = {name: dict(t) for name, t in (templates or {}).items()}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._bulkheads: dict[str, Bulkhead] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Registry(breakers={sorted(self._breakers)!r}, bulkheads={sorted(self._bulkheads)!r})"

    # --- get or create -------------------------------------------------------------------------------------------

    def breaker(self, name: str, /, *, template: str | None = None, **config: Any) -> CircuitBreaker:
        """The breaker called ``name``, created with ``defaults`` + ``template`` + ``config`` if it does not exist.

        Args:
            name: the breaker's name.
            template: the name of a template given to the registry, or ``None``.
            **config: ``CircuitBreaker`` keyword arguments.

        Raises:
            KeyError: ``template`` is not a known template.
            ValueError: the breaker exists and a setting given here (or by the template) differs from its own,
                or a setting is invalid.
            TypeError: an unknown setting.
        """
        settings: dict[str, Any] = dict(self._defaults)
        if template is not None:
            if template not in self._templates:
                raise KeyError(f"unknown breaker template {template!r}; known: {sorted(self._templates)}")
            settings.update(self._templates[template])
            specified = [*self._templates[template], *config]
        else:
            specified = list(config)
        settings.update(config)
        existing = self._breakers.get(name)
        if existing is not None and not specified:
            return existing
        # Validate and compare on a breaker built without the store: built with one, a breaker is attached to it
        # (synced with the fleet from then on), so only the breaker kept may be built with it.
        store = settings.pop("store", None)
        if store is not None:
            check_store(store)
        candidate = CircuitBreaker(name, **settings)  # validates even when the breaker exists
        with self._lock:
            existing = self._breakers.get(name)
            if existing is None:
                if store is not None:  # under the lock: two threads creating the name attach one breaker
                    candidate = CircuitBreaker(name, store=store, **settings)
                self._breakers[name] = candidate
                return candidate
        different = [
            key
            for key in specified
            if (existing.config.store is not store if key == "store" else _conflicts(existing, candidate, [key]))
        ]
        if different:
            raise ValueError(f"circuit breaker {name!r} already exists with different settings: {different}")
        return existing

    def bulkhead(self, name: str, /, **config: Any) -> Bulkhead:
        """The bulkhead called ``name``, created with ``config`` (``Bulkhead`` keyword arguments) if it does not
        exist.

        Raises:
            ValueError: the bulkhead exists and a setting given here differs from its own, or a setting is invalid.
            TypeError: an unknown setting.
        """
        existing = self._bulkheads.get(name)
        if existing is not None and not config:
            return existing
        candidate = Bulkhead(name, **config)
        with self._lock:
            existing = self._bulkheads.get(name)
            if existing is None:
                self._bulkheads[name] = candidate
                return candidate
        different = _conflicts(existing, candidate, list(config))
        if different:
            raise ValueError(f"bulkhead {name!r} already exists with different settings: {different}")
        return existing

    def register(self, policy: CircuitBreaker | Bulkhead) -> None:
        """Add a breaker or bulkhead created elsewhere, under its own name.

        Raises:
            ValueError: another instance is already registered under that name.
            TypeError: ``policy`` is neither a ``CircuitBreaker`` nor a bulkhead.
        """
        if isinstance(policy, CircuitBreaker):
            table: dict[str, Any] = self._breakers
        elif isinstance(policy, Bulkhead):
            table = self._bulkheads
        else:
            raise TypeError(f"register() takes a CircuitBreaker or a Bulkhead, got {policy!r}")
        with self._lock:
            current = table.setdefault(policy.name, policy)
        if current is not policy:
            raise ValueError(f"{policy.name!r} is already registered to another instance")

    def get(self, name: str) -> CircuitBreaker | None:
        """The breaker called ``name``, or ``None``."""
        return self._breakers.get(name)

    def get_bulkhead(self, name: str) -> Bulkhead | None:
        """The bulkhead called ``name``, or ``None``."""
        return self._bulkheads.get(name)

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """A copy of the name → breaker table."""
        return dict(self._breakers)

    @property
    def bulkheads(self) -> dict[str, Bulkhead]:
        """A copy of the name → bulkhead table."""
        return dict(self._bulkheads)

    def remove(self, name: str) -> None:
        """Forget the breaker and the bulkhead called ``name`` (instances in use keep working)."""
        with self._lock:
            self._breakers.pop(name, None)
            self._bulkheads.pop(name, None)

    def clear(self) -> None:
        """Forget every breaker and bulkhead."""
        with self._lock:
            self._breakers.clear()
            self._bulkheads.clear()

    def reset_all(self) -> None:
        """Reset every breaker to CLOSED (counts and open-period backoff forgotten)."""
        for breaker in list(self._breakers.values()):
            breaker.reset()

    # --- health --------------------------------------------------------------------------------------------------

    def critical_open(self) -> list[str]:
        """Names of the breakers marked ``critical=True`` that are rejecting calls: FORCED_OPEN, or OPEN within its
        open period (once that has passed, the next call is a probe: reading the statistics moves a local breaker to
        HALF_OPEN, and a breaker shared through a store asks its fleet for probe permits at the next call)."""
        return self._circuits_report()[1]

    def circuits_snapshot(self) -> dict[str, Any]:
        """The ``/health/circuits`` JSON (DESIGN.md): ``{"status": "ok" | "degraded", "circuits": {name: {...}}}``.

        ``status`` is ``"degraded"`` while any breaker is OPEN, HALF_OPEN or FORCED_OPEN. Per breaker: ``state``
        (the :class:`CircuitState` value), ``failure_rate`` and ``slow_call_rate`` (percent, or ``null``
        when not judged), ``calls`` (int: in the window, or since the last transition for the consecutive model)
        and ``retry_after`` (seconds until a probe is admitted, or ``null``). Reading applies the rules at the
        current time (``CircuitBreaker.statistics()``): an OPEN breaker whose open period has passed shows HALF_OPEN.
        """
        return self._circuits_report()[0]

    def _circuits_report(self) -> tuple[dict[str, Any], list[str]]:
        """:meth:`circuits_snapshot` and :meth:`critical_open` from one reading of each breaker's statistics (what
        the health endpoint serves: its status code then agrees with its document)."""
        circuits: dict[str, Any] = {}
        critical: list[str] = []
        degraded = False
        for name, breaker in sorted(self._breakers.items()):
            stats = breaker.statistics()
            degraded = degraded or stats.state in _OPENISH
            if breaker.critical and _rejecting(stats):
                critical.append(name)
            circuits[name] = {
                "state": stats.state.value,
                "failure_rate": stats.failure_rate,
                "slow_call_rate": stats.slow_call_rate,
                "calls": stats.calls,
                "retry_after": stats.retry_after,
            }
        return {"status": "degraded" if degraded else "ok", "circuits": circuits}, critical

    def bulkheads_snapshot(self) -> dict[str, Any]:
        """The ``/health/bulkheads`` JSON (DESIGN.md): ``{name: {"active": int, "queued": int, "available": int}}``."""
        result: dict[str, Any] = {}
        for name, bulkhead in sorted(self._bulkheads.items()):
            stats = bulkhead.statistics()
            result[name] = {"active": stats.active, "queued": stats.queued, "available": stats.available}
        return result

    def snapshot(self) -> dict[str, Any]:
        """Both health documents in one JSON-ready dict: ``{"status", "circuits", "bulkheads"}``."""
        document = self.circuits_snapshot()
        document["bulkheads"] = self.bulkheads_snapshot()
        return document


registry = Registry()
"""The process-wide default registry (``stalwart.registry``)."""
