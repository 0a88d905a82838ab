"""Regression: a wrong ``transport`` argument was accepted and failed at the first request.

``AsyncResilientTransport(ResilienceConfig(timeout=1))`` (the policy passed positionally: the first parameter is the
inner transport) and a sync transport given to the async driver (or the reverse) were accepted; the first request
then failed with ``AttributeError: 'ResilienceConfig' object has no attribute 'handle_async_request'``. The drivers
now raise ``TypeError`` naming ``transport`` at construction.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stalwart.httpx import AsyncResilientTransport, ResilienceConfig, ResilientTransport


class SyncOnly(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)


class AsyncOnly(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)


@pytest.mark.parametrize("driver", [AsyncResilientTransport, ResilientTransport])
def test_a_config_passed_positionally_is_refused(driver: Any) -> None:
    with pytest.raises(TypeError, match=r"transport must be an httpx transport .* got ResilienceConfig \(pass the"):
        driver(ResilienceConfig(timeout=1.0))


def test_a_sync_transport_in_the_async_driver_is_refused() -> None:
    with pytest.raises(TypeError, match=r"transport must be an httpx transport with handle_async_request\(\)"):
        AsyncResilientTransport(SyncOnly())  # type: ignore[arg-type]


def test_an_async_transport_in_the_sync_driver_is_refused() -> None:
    with pytest.raises(TypeError, match=r"transport must be an httpx transport with handle_request\(\)"):
        ResilientTransport(AsyncOnly())  # type: ignore[arg-type]


def test_the_right_transports_are_accepted() -> None:
    AsyncResilientTransport(AsyncOnly())
    ResilientTransport(SyncOnly())
    mock = httpx.MockTransport(lambda request: httpx.Response(200))  # both methods
    AsyncResilientTransport(mock)
    ResilientTransport(mock)
    AsyncResilientTransport()  # httpx's own, by default
    ResilientTransport()
