"""Regression: an empty ``Idempotency-Key`` header made a POST retryable (and hedgeable).

``may_resend`` tested for the header's presence, not its value: ``headers={"Idempotency-Key": key or ""}`` with no
key sent a POST the transport then resent after it may have reached the server, with no key to deduplicate it (a
server refuses a blank key: draft-ietf-httpapi-idempotency-key-header). A blank key is now no key: not retried once
sent, and ``auto_idempotency_key`` replaces it with a fresh one.
"""

from __future__ import annotations

import httpx
import pytest

from stalwart import Backoff
from stalwart._registry import Registry
from stalwart.httpx import ResilienceConfig, ResilientTransport
from stalwart.testing import FakeClock


def _client(auto: bool, seen: list[str | None]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("idempotency-key"))
        return httpx.Response(503)

    config = ResilienceConfig(backoff=Backoff.constant(0.0), auto_idempotency_key=auto, use_breaker=False)
    transport = ResilientTransport(httpx.MockTransport(handler), config=config, registry=Registry(), clock=FakeClock())
    return httpx.Client(transport=transport)


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_key_is_not_a_key(blank: str) -> None:
    seen: list[str | None] = []
    with _client(False, seen) as client:
        assert client.post("http://svc.test/pay", headers={"Idempotency-Key": blank}).status_code == 503
    assert len(seen) == 1  # sent once: no key, no resend


@pytest.mark.parametrize("blank", ["", "   "])
def test_auto_key_replaces_a_blank_key(blank: str) -> None:
    seen: list[str | None] = []
    with _client(True, seen) as client:
        client.post("http://svc.test/pay", headers={"Idempotency-Key": blank})
    assert len(seen) == 3  # retried under one generated key
    assert len(set(seen)) == 1
    assert seen[0] is not None
    assert seen[0].strip()


def test_a_real_key_is_still_retried() -> None:
    seen: list[str | None] = []
    with _client(False, seen) as client:
        client.post("http://svc.test/pay", headers={"Idempotency-Key": "k-1"})
    assert seen == ["k-1", "k-1", "k-1"]
