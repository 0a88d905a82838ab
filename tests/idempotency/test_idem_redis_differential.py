"""RedisStore's Lua scripts against the reference transitions: random interleavings, compared with MemoryStore."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import HealthCheck, Phase, settings
from idem_differential import DifferentialMachine
from idem_durable import drop_redis_keys

from stalwart.idempotency import IdempotencyStore
from stalwart.idempotency.stores.redis import RedisStore

pytestmark = pytest.mark.integration

_server: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _redis(redis_url: str) -> None:
    _server["url"] = redis_url  # skips (or fails under CI=true) when Redis is down


class RedisDifferential(DifferentialMachine):
    def make_store(self) -> IdempotencyStore:
        self.prefix = f"stalwart-test-{secrets.token_hex(6)}"
        return RedisStore.from_url(_server["url"], prefix=self.prefix, check_server_on_first_use=False)

    def cleanup(self) -> None:
        drop_redis_keys(_server["url"], self.prefix)


TestRedisDifferential = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no line tracing over network calls
)(RedisDifferential).TestCase
