"""Regression: the seed's ``with_timeout`` treated a falsy fallback (None, 0, {}, "") as "no fallback" and raised."""

from __future__ import annotations

import asyncio

import pytest

import stalwart as sw


@pytest.mark.parametrize("fallback", [None, 0, 0.0, False, "", {}, [], ()])
async def test_a_falsy_fallback_is_returned_on_expiry(fallback: object) -> None:
    result = await sw.with_timeout(asyncio.sleep(60), 0.01, fallback=fallback)
    assert result is fallback


async def test_no_fallback_still_raises() -> None:
    with pytest.raises(sw.DeadlineExceeded):
        await sw.with_timeout(asyncio.sleep(60), 0.01)
