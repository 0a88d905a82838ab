"""Fixtures for the idempotency tests: ``harness`` is parametrised over every store (see idem_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from idem_harness import STORE_KINDS, Harness, make_harness


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def harness(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = await make_harness(store_kind, tmp_path, request)
    try:
        yield h
    finally:
        await h.store.aclose()
