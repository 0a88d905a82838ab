"""``Registry.breaker(name, store=..., ...)`` is get-or-create: a lookup must not attach a second breaker to the store.

The registry built a candidate ``CircuitBreaker`` on every call that gave settings, to validate and compare them,
even when the breaker existed; with ``store=`` that constructor attaches the candidate to the store, which syncs it
with Redis from then on. Every lookup (the documented ``sw.registry.breaker("payments", ..., store=store)`` in each
module or request; a registry whose defaults or template carry the store, looked up by each new transport) left a
ghost breaker behind: one more Redis round trip per sync, forever, and a ghost even for a lookup refused for its
conflicting settings. Two threads creating the same name at once attached two. The registry now validates and
compares without a store, and attaches the one breaker it keeps, under its lock.
"""

from __future__ import annotations

import threading

import pytest

import stalwart as sw
from stalwart._breaker_link import BreakerLink


class Store:
    flush_size = 1000

    def __init__(self) -> None:
        self.links: list[BreakerLink] = []

    def attach(self, link: BreakerLink) -> None:
        self.links.append(link)


def test_lookups_with_settings_attach_only_the_breaker_kept() -> None:
    store = Store()
    registry = sw.Registry()
    first = registry.breaker("payments", window=sw.CountWindow(100), minimum_calls=20, store=store)
    for _ in range(5):
        assert registry.breaker("payments", window=sw.CountWindow(100), minimum_calls=20, store=store) is first
    with pytest.raises(ValueError, match="window"):
        registry.breaker("payments", window=sw.CountWindow(50), store=store)
    assert [link.name for link in store.links] == ["payments"]
    assert store.links[0].machine is first._core


def test_a_store_from_the_defaults_or_a_template_is_attached_once() -> None:
    store = Store()
    registry = sw.Registry(defaults={"store": store}, templates={"http": {"failure_threshold": 3, "store": store}})
    a = registry.breaker("a", failure_threshold=2)
    assert registry.breaker("a", failure_threshold=2) is a
    b = registry.breaker("b", template="http")
    assert registry.breaker("b", template="http") is b
    assert sorted(link.name for link in store.links) == ["a", "b"]


def test_a_different_store_is_a_conflict() -> None:
    registry = sw.Registry()
    one, other = Store(), Store()
    registry.breaker("payments", store=one)
    with pytest.raises(ValueError, match="store"):
        registry.breaker("payments", store=other)
    with pytest.raises(ValueError, match="store"):
        registry.breaker("payments", store=None)
    assert other.links == []
    assert len(one.links) == 1


def test_an_invalid_store_is_still_refused() -> None:
    registry = sw.Registry()
    registry.breaker("payments")
    with pytest.raises(TypeError, match="store"):
        registry.breaker("payments", store=object())
    with pytest.raises(TypeError, match="store"):
        registry.breaker("other", store=object())
    assert registry.get("other") is None


def test_racing_creators_attach_one_breaker() -> None:
    store = Store()
    registry = sw.Registry()
    barrier = threading.Barrier(8)
    got: list[sw.CircuitBreaker] = []

    def create() -> None:
        barrier.wait()
        got.append(registry.breaker("payments", failure_threshold=3, store=store))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(breaker) for breaker in got}) == 1
    assert len(store.links) == 1
