"""Regression: ``transport.origin(url)`` raised ``AttributeError`` for a ``str``.

What was wrong: ``TransportCore.origin`` read ``url.raw_scheme`` at once, so
``transport.origin("https://api.example.com")`` — the natural way to reach an origin's breaker, bulkhead or retry
budget — failed with ``AttributeError: 'str' object has no attribute 'raw_scheme'``, and the docs had to tell
users to wrap the URL in ``httpx.URL``. A relative URL or a bare host name (``"api.example.com"``, which httpx
parses as a path) silently created a bogus origin ``"http:://:0"``. Now ``origin`` takes ``str | httpx.URL`` (the
same origin either way, whatever the path), and a URL that names no origin (no scheme or no host) is a
``ValueError``; anything else a ``TypeError``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stalwart._registry import Registry
from stalwart.httpx import AsyncResilientTransport, ResilientTransport


@pytest.mark.parametrize("flavour", [AsyncResilientTransport, ResilientTransport])
def test_a_str_names_the_same_origin_as_its_url(flavour: Any) -> None:
    transport = flavour(registry=Registry())
    by_str = transport.origin("https://api.example.com/items?page=2")
    assert by_str is transport.origin(httpx.URL("https://api.example.com/other"))
    assert by_str is transport.origin("https://API.example.com:443")
    assert by_str.name == "http:https://api.example.com:443"
    assert transport.origin("http://api.example.com") is not by_str


@pytest.mark.parametrize("url", ["api.example.com", "/items", "", httpx.URL("/items")])
def test_a_url_naming_no_origin_is_refused(url: Any) -> None:
    transport = AsyncResilientTransport(registry=Registry())
    with pytest.raises(ValueError, match="absolute"):
        transport.origin(url)
    assert transport.bulkheads() == {}


def test_other_types_are_refused() -> None:
    with pytest.raises(TypeError, match=r"str or an httpx\.URL"):
        AsyncResilientTransport(registry=Registry()).origin(b"https://api.example.com")
