"""PostgresStore's statements against the reference transitions: random interleavings, compared with MemoryStore."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from idem_differential import DifferentialMachine
from idem_durable import drop_schema

from stalwart.idempotency import IdempotencyStore
from stalwart.idempotency.stores.postgres import PostgresStore

pytestmark = pytest.mark.integration

_server: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _postgres(database_url: str) -> Iterator[None]:
    # One schema for the whole test (a table per example); dropped afterwards.
    _server["url"], _server["schema"] = database_url, f"stalwart_test_{uuid.uuid4().hex[:12]}"
    yield
    drop_schema(database_url, _server["schema"])


class PostgresDifferential(DifferentialMachine):
    def make_store(self) -> IdempotencyStore:
        table = f"t_{secrets.token_hex(6)}"
        return PostgresStore.from_url(_server["url"], schema=_server["schema"], table=table, max_size=2)


TestPostgresDifferential = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no line tracing over network calls
)(PostgresDifferential).TestCase
