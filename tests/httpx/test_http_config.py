"""ResilienceConfig: defaults (the seed's combined client) and validation naming the field."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from typing import Any

import pytest

from stalwart._backoff import Backoff, Jitter
from stalwart.httpx import PerOriginBudget, ResilienceConfig


def test_defaults_are_the_seeds_combined_client() -> None:
    config = ResilienceConfig()
    assert config.timeout == 10.0
    assert config.max_attempts == 3
    assert config.backoff == Backoff.exponential(initial=1.0, multiplier=2.0, max_delay=60.0)
    assert config.backoff.jitter == Jitter.FULL
    assert config.max_retry_after == 60.0
    assert config.retry_statuses == {408, 429, 500, 502, 503, 504}
    assert config.retry_methods == {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
    assert config.idempotency_header == "Idempotency-Key"
    assert 500 in config.failure_statuses
    assert 599 in config.failure_statuses
    assert not any(400 <= s < 500 for s in config.failure_statuses)
    assert (config.failure_threshold, config.success_threshold) == (5, 3)
    assert (config.reset_timeout, config.half_open_max_calls) == (30.0, 3)
    assert (config.max_concurrent, config.max_queue, config.queue_timeout) == (20, 100, 30.0)
    assert config.attempt_header == "Stalwart-Attempt"
    assert config.read_response is False


def test_frozen_and_slotted() -> None:
    config = ResilienceConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout = 1.0  # type: ignore[misc]
    assert not hasattr(config, "__dict__")


def test_normalisation() -> None:
    config = ResilienceConfig(
        timeout=timedelta(milliseconds=1500),
        reset_timeout=timedelta(seconds=5),
        retry_statuses=[503, 503, 429],
        retry_methods=("get", "Post"),
    )
    assert config.timeout == 1.5
    assert config.reset_timeout == 5.0
    assert config.retry_statuses == frozenset({503, 429})
    assert config.retry_methods == frozenset({"GET", "POST"})
    assert ResilienceConfig(timeout=None).timeout is None
    assert ResilienceConfig(timeout=math.inf).timeout is None
    assert ResilienceConfig(max_retry_after=math.inf).max_retry_after == math.inf
    assert ResilienceConfig(attempt_header=None).attempt_header is None


def test_every_duration_takes_a_timedelta_and_is_stored_as_float() -> None:
    config = ResilienceConfig(
        max_retry_after=timedelta(minutes=2), reset_timeout=timedelta(seconds=5), queue_timeout=timedelta(seconds=1)
    )
    assert (config.max_retry_after, config.reset_timeout, config.queue_timeout) == (120.0, 5.0, 1.0)
    assert all(type(v) is float for v in (config.max_retry_after, config.reset_timeout, config.queue_timeout))
    budget = PerOriginBudget(ttl=timedelta(seconds=30))
    assert budget.ttl == 30.0
    assert type(budget.ttl) is float


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 0),
        ("timeout", -1.0),
        ("timeout", math.nan),
        ("max_attempts", 0),
        ("max_retry_after", -1.0),
        ("max_retry_after", math.nan),
        ("retry_statuses", [99]),
        ("retry_statuses", [600]),
        ("retry_methods", ["GE T"]),
        ("retry_methods", [""]),
        ("idempotency_header", "Bad Header"),
        ("idempotency_header", ""),
        ("failure_statuses", [1000]),
        ("failure_threshold", 0),
        ("success_threshold", 0),
        ("reset_timeout", -3.0),
        ("half_open_max_calls", 0),
        ("max_concurrent", 0),
        ("max_queue", -1),
        ("queue_timeout", -1.0),
        ("attempt_header", "X:Y"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        ResilienceConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", "10"),
        ("max_attempts", 2.0),
        ("max_attempts", True),
        ("backoff", 1.0),
        ("retry_statuses", "503"),
        ("retry_statuses", 503),
        ("retry_methods", "GET"),
        ("attempt_header", 1),
        ("read_response", 1),
        ("use_breaker", "yes"),
        ("use_bulkhead", None),
    ],
)
def test_wrong_types_raise_type_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(TypeError, match=field):
        ResilienceConfig(**{field: value})


def test_success_threshold_above_half_open_max_calls_is_refused() -> None:
    with pytest.raises(ValueError, match="success_threshold"):
        ResilienceConfig(success_threshold=4, half_open_max_calls=3)
    assert ResilienceConfig(success_threshold=1, half_open_max_calls=1).success_threshold == 1
