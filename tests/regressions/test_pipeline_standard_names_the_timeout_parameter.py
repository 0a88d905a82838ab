"""Regression: ``Pipeline.standard(total_timeout=0)`` raised "seconds must be > 0 seconds", naming a parameter the
caller never passed.

What was wrong: the numbers given as ``total_timeout`` / ``attempt_timeout`` were turned into ``Timeout(value)``,
whose ``ValueError`` names ``Timeout``'s own parameter, ``seconds``; with two timeouts in one call the caller could
not tell which one was wrong. Every invalid configuration must be a ``ValueError`` naming the parameter
(DESIGN.md §1.7).
"""

from __future__ import annotations

import math

import pytest

import stalwart as sw


@pytest.mark.parametrize("parameter", ["total_timeout", "attempt_timeout"])
@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, 10**400])
def test_an_invalid_timeout_names_the_parameter_given(parameter: str, bad: float) -> None:
    with pytest.raises(ValueError, match=f"^{parameter}: seconds must be"):
        sw.Pipeline.standard(**{parameter: bad})  # type: ignore[arg-type]


def test_valid_numbers_still_become_timeouts() -> None:
    pipeline = sw.Pipeline.standard(total_timeout=2.0, attempt_timeout=0.5)
    assert [p.seconds for p in pipeline.policies if isinstance(p, sw.Timeout)] == [2.0, 0.5]
