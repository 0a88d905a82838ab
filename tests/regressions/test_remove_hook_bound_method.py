"""Regression: ``remove_hook(events.append)`` left the hook installed (compared by identity, and each attribute
access builds a new bound method), so one test's hook leaked into every later test."""

import stalwart as sw
from stalwart._events import hooks_installed


def test_remove_hook_accepts_an_equal_bound_method() -> None:
    events: list[sw.Event] = []
    sw.add_hook(events.append)
    try:
        assert hooks_installed()
    finally:
        sw.remove_hook(events.append)
    assert not hooks_installed()


def test_remove_hook_removes_one_of_two_equal_hooks() -> None:
    events: list[sw.Event] = []
    sw.add_hook(events.append)
    sw.add_hook(events.append)
    sw.remove_hook(events.append)
    assert hooks_installed()
    sw.remove_hook(events.append)
    assert not hooks_installed()
