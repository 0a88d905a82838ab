# Store engineer's file: see git log before rewriting.
"""Checks of a Redis server's settings for :class:`~stalwart.idempotency.stores.redis.RedisStore` (spec §2.16.3).

:func:`server_problems` is pure; :func:`read_settings` asks the server (``CONFIG GET``, falling back to ``INFO`` where
``CONFIG`` is disabled, as on several managed services).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from stalwart._exceptions import StoreUnavailable

__all__ = ["RedisServerCheckError", "read_settings", "server_problems"]


class RedisServerCheckError(StoreUnavailable):
    """The Redis server's settings break the idempotency guarantees and ``strict_server_checks=True`` (HTTP 503).

    Attributes:
        problems: one sentence per problem found.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("Redis settings break idempotency guarantees: " + "; ".join(self.problems))


def server_problems(settings: Mapping[str, str | None]) -> list[str]:
    """The problems in a Redis server's settings for the idempotency store (pure; spec §2.16.3).

    Args:
        settings: ``maxmemory-policy``, ``appendonly`` and ``appendfsync`` as ``CONFIG GET`` reports them; a missing
            or None value means the setting could not be read.

    Returns:
        One sentence per problem; empty when the server keeps every guarantee.
    """
    problems: list[str] = []
    policy = settings.get("maxmemory-policy")
    if policy is None:
        problems.append("could not read maxmemory-policy (CONFIG and INFO refused); it must be noeviction")
    elif policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy!r}, not 'noeviction': Redis may evict live in-progress records "
            "(every record has a TTL) and a retried request would then run twice"
        )
    appendonly = settings.get("appendonly")
    if appendonly is None:
        problems.append("could not read appendonly; AOF with appendfsync always is required for G1 across crashes")
    elif appendonly != "yes":
        problems.append("AOF is off (appendonly no): claims acknowledged before a crash or restart are lost")
    else:
        fsync = settings.get("appendfsync")
        if fsync is None:
            problems.append("could not read appendfsync; 'always' is required for G1 across crashes")
        elif fsync != "always":
            problems.append(f"appendfsync is {fsync!r}, not 'always': a crash can lose the last acknowledged claims")
    return problems


async def read_settings(client: Redis | RedisCluster) -> dict[str, str | None]:
    """``maxmemory-policy``, ``appendonly`` and ``appendfsync`` of the server (None where they cannot be read)."""
    settings: dict[str, str | None] = {}
    for name in ("maxmemory-policy", "appendonly", "appendfsync"):
        try:
            reply = await client.config_get(name)
        except ResponseError:  # CONFIG disabled or renamed (managed services), or denied by an ACL
            continue
        settings[name] = _setting(reply, name)
    if settings.get("maxmemory-policy") is None or settings.get("appendonly") is None:
        try:  # INFO works where CONFIG is disabled; it has no appendfsync
            info = await client.info("memory")
            info.update(await client.info("persistence"))
        except ResponseError:
            return settings
        if settings.get("maxmemory-policy") is None and "maxmemory_policy" in info:
            settings["maxmemory-policy"] = str(info["maxmemory_policy"])
        if settings.get("appendonly") is None and "aof_enabled" in info:
            settings["appendonly"] = "yes" if int(info["aof_enabled"]) else "no"
    return settings


def _setting(reply: Any, name: str) -> str | None:
    # CONFIG GET answers {name: value}, with bytes or str keys depending on the client's decoding.
    if not isinstance(reply, dict):
        return None
    value = reply.get(name, reply.get(name.encode()))
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)
