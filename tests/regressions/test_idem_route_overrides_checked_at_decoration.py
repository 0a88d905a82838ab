"""Regression: ``@idempotent(...)`` accepted any keyword and any value; a typo (``lease_tl=3``) or a wrong value
(``retention=-1``) surfaced only on the first request to the route, as a ``TypeError``/``ValueError`` raised inside
the middleware: that route then answered 500 to every request, in production, while the app had started fine.

The project's rule is "invalid configuration → an error naming the parameter at construction"; Powertools' config
validation bugs show how late-found configuration errors take every call down
(aws-powertools/powertools-lambda-python #8473: every call failed before the handler ran). The decorator now
rejects unknown names (``TypeError``) and values no configuration could take (``ValueError``) when it is applied.
Values that depend on the app-wide settings (``heartbeat_every`` against the app's lease) are still checked
against them at the first request.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from stalwart.idempotency import idempotent


def test_an_unknown_setting_is_a_type_error_when_decorating() -> None:
    with pytest.raises(TypeError, match="lease_tl"):
        idempotent(lease_tl=3.0)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"retention": -1.0}, "retention"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"max_key_length": 0}, "max_key_length"),
        ({"methods": frozenset({"PO ST"})}, "methods"),
        ({"abandoned_status": 99}, "abandoned_status"),
        ({"replay_header": "bad header"}, "replay_header"),
    ],
)
def test_an_invalid_value_is_a_value_error_when_decorating(overrides: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        idempotent(**overrides)


def test_enabled_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="enabled"):
        idempotent(enabled="no")


def test_valid_overrides_still_decorate() -> None:
    async def endpoint() -> None:
        return None

    for overrides in (
        {},
        {"enabled": False},
        {"required": True, "lease_ttl": 3.0},
        {"retention": timedelta(hours=2), "methods": frozenset({"PUT"})},
        {"heartbeat_every": 40.0},  # valid with an app-wide lease above 40 s: checked at the first request
    ):
        assert idempotent(**overrides)(endpoint).__wrapped__ is endpoint
