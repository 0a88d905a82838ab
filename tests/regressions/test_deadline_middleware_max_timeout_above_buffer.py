"""Regression: ``DeadlineMiddleware(max_timeout=..., buffer=...)`` with ``max_timeout <= buffer`` was accepted.

Every budget is cut to ``max_timeout`` before the buffer is taken, so with ``max_timeout <= buffer`` nothing is left
for the handler: every request carrying a deadline header was answered 504 at once, a misconfiguration found only in
production traffic. It is now a ``ValueError`` at construction, naming both parameters.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from stalwart.asgi import DeadlineMiddleware


async def _app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - never called
    raise AssertionError


@pytest.mark.parametrize(
    ("max_timeout", "buffer"),
    [(0.5, 0.5), (0.2, 0.5), (timedelta(milliseconds=400), timedelta(seconds=1))],
)
def test_max_timeout_not_above_buffer_is_refused(max_timeout: float | timedelta, buffer: float | timedelta) -> None:
    with pytest.raises(ValueError, match=r"max_timeout .* must exceed buffer"):
        DeadlineMiddleware(_app, max_timeout=max_timeout, buffer=buffer)


@pytest.mark.parametrize(("max_timeout", "buffer"), [(0.6, 0.5), (None, 5.0), (float("inf"), 5.0), (1.0, 0.0)])
def test_max_timeout_above_buffer_or_uncapped_is_accepted(max_timeout: float | None, buffer: float) -> None:
    DeadlineMiddleware(_app, max_timeout=max_timeout, buffer=buffer)
