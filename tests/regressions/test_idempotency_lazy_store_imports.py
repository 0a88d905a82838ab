"""Regression: ``from stalwart.idempotency import RedisStore`` failed although the package docstring promised the
durable stores are imported on first use (``__getattr__`` only knew ``idempotency_state``)."""

import stalwart.idempotency as idem
import stalwart.idempotency.stores as stores
from stalwart.idempotency import PostgresStore, RedisStore
from stalwart.idempotency.stores import PostgresStore as P2
from stalwart.idempotency.stores import RedisStore as R2


def test_durable_stores_are_importable_from_the_package() -> None:
    assert RedisStore is R2
    assert PostgresStore is P2
    assert {"RedisStore", "PostgresStore"} <= set(idem.__all__)
    assert {"RedisStore", "PostgresStore"} <= set(stores.__all__)


def test_every_name_in_all_resolves() -> None:
    for module in (idem, stores):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
