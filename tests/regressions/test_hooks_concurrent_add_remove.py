"""Regression: hooks added and removed from several threads at once were lost (or came back).

What was wrong: ``add_hook`` and ``remove_hook`` replace the module's tuple of hooks by a read-modify-write without
a lock. ``remove_hook`` calls ``==`` on every installed hook while it builds the new tuple, so a thread switch there
let a concurrent ``add_hook`` be overwritten (the new hook silently never receives an event) or a hook removed by
the other thread be written back. Instrumentation set up per worker thread (a test harness, a metrics exporter
started in a thread) lost its events without any error. ``add_hook`` also accepted a non-callable, which then
failed, logged, on every single event. Peer report of the kind: resilience4j issue #1115 ("ConcurrentModification
Exception warning log while consuming events": its EventProcessor mixed synchronized and unsynchronized updates of
its consumers; ``registerConsumer`` had been made ``synchronized`` in resilience4j PR #415).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from stalwart import _events


class Hook:
    """A hook compared by identity through a Python-level ``__eq__`` (a thread may switch inside it)."""

    def __call__(self, event: _events.Event) -> None:
        return None

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


@pytest.fixture
def fast_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_adds_and_removes_lose_nothing() -> None:
    resident = [Hook() for _ in range(50)]
    for hook in resident:
        _events.add_hook(hook)
    try:
        for _ in range(10):
            kept = [Hook() for _ in range(200)]
            temporary = [Hook() for _ in range(200)]
            for hook in temporary:
                _events.add_hook(hook)
            start = threading.Barrier(2)

            def add(hooks: list[Hook] = kept, start: threading.Barrier = start) -> None:
                start.wait()
                for hook in hooks:
                    _events.add_hook(hook)

            def remove(hooks: list[Hook] = temporary, start: threading.Barrier = start) -> None:
                start.wait()
                for hook in hooks:
                    _events.remove_hook(hook)

            threads = [threading.Thread(target=add), threading.Thread(target=remove)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            installed = {id(hook) for hook in _events._hooks}
            assert all(id(hook) in installed for hook in [*resident, *kept])
            assert not any(id(hook) in installed for hook in temporary)
            for hook in kept:
                _events.remove_hook(hook)
    finally:
        for hook in resident:
            _events.remove_hook(hook)
    assert not any(isinstance(hook, Hook) for hook in _events._hooks)


def test_a_hook_must_be_callable() -> None:
    with pytest.raises(TypeError, match="hook"):
        _events.add_hook("not a hook")  # type: ignore[arg-type]
    assert "not a hook" not in _events._hooks
