"""Regression: ``LoggingHook(level)`` accepted any value and then failed on every event.

What was wrong: ``LoggingHook("INFO")`` (the form ``logging.Logger.setLevel`` and ``logging.basicConfig`` accept),
``LoggingHook(None)`` or ``LoggingHook("verbose")`` was accepted; at each event ``logger.log(level, ...)`` raised
``TypeError("level must be an integer")``, which the hook machinery logged with a traceback and dropped: no event was
ever logged, and each one wrote an error instead. Bad configuration is refused when it is given (DESIGN.md): a level
name known to ``logging`` (in any case) is taken as its number, an unknown one is a ``ValueError`` naming ``level``,
and anything but an ``int`` or a ``str`` (``bool`` included) a ``TypeError``.
"""

from __future__ import annotations

import logging

import pytest

import stalwart as sw


@pytest.mark.parametrize(("given", "expected"), [("INFO", logging.INFO), ("warning", logging.WARNING), (5, 5)])
def test_level_names_are_taken_as_logging_takes_them(
    caplog: pytest.LogCaptureFixture, given: int | str, expected: int
) -> None:
    hook = sw.LoggingHook(given)  # type: ignore[arg-type]
    assert hook.level == expected
    with caplog.at_level(1, logger="stalwart"):
        hook(sw.CallRejected("b", "bulkhead_full"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (expected, "CallRejected(name='b', reason='bulkhead_full')")
    ]


def test_unknown_level_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="level"):
        sw.LoggingHook("verbose")  # type: ignore[arg-type]


@pytest.mark.parametrize("given", [None, True, 1.5, logging.getLogger("x")])
def test_other_types_are_a_type_error(given: object) -> None:
    with pytest.raises(TypeError, match="level"):
        sw.LoggingHook(given)  # type: ignore[arg-type]
