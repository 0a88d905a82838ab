"""``LoggingHook``: every event it receives is logged on the ``stalwart`` logger at its level."""

from __future__ import annotations

import logging

import pytest

import stalwart as sw
from stalwart.testing import FakeClock


class Down(ConnectionError):
    pass


def test_events_of_a_retried_call_are_logged_at_the_level(caplog: pytest.LogCaptureFixture) -> None:
    hook = sw.LoggingHook(logging.WARNING)
    sw.add_hook(hook)
    try:
        retry = sw.Retry(on=Down, max_attempts=2, clock=FakeClock(), name="payments")

        def down() -> None:
            raise Down("refused")

        with caplog.at_level(logging.DEBUG, logger="stalwart"), pytest.raises(Down):
            retry.call(down)
    finally:
        sw.remove_hook(hook)
    logged = [r for r in caplog.records if r.name == "stalwart" and r.levelno == logging.WARNING]
    messages = [r.getMessage() for r in logged]
    assert any(m.startswith("RetryScheduled(") and "name='payments'" in m for m in messages), messages
    assert any(m.startswith("RetryGaveUp(") and "reason='max_attempts'" in m for m in messages), messages


def test_default_level_is_info(caplog: pytest.LogCaptureFixture) -> None:
    hook = sw.LoggingHook()
    with caplog.at_level(logging.DEBUG, logger="stalwart"):
        hook(sw.CallRejected("b", "bulkhead_full"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "CallRejected(name='b', reason='bulkhead_full')")
    ]
