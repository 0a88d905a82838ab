"""Shared fixtures: real Redis and PostgreSQL for integration tests (DESIGN.md §4).

With ``CI=true`` an unavailable service is a failure, never a skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlparse

import pytest

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(url: str, port: int, what: str) -> str:
    if not _reachable(url, port):
        message = f"{what} is not reachable at {url}; run `make services`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a real Redis server (fails under CI=true when it is down, else skips)."""
    return _require(REDIS_URL, 6379, "Redis")


@pytest.fixture(scope="session")
def database_url() -> str:
    """The URL of a real PostgreSQL database (fails under CI=true when it is down, else skips)."""
    return _require(DATABASE_URL, 5432, "PostgreSQL")


@pytest.fixture
def unique_prefix() -> str:
    """A key prefix / schema name unique to one test."""
    return f"stalwart-test-{uuid.uuid4().hex[:12]}"
