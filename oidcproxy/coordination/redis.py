"""SharedState on Redis: what the replicas of one deployment agree on (a refresh lock, the refreshed
session for requests with the old cookie, each login state used once).

    RedisState(client, prefix="oidcproxy:", timeout_s=1.0)

`client` is a `redis.asyncio.Redis` (standalone, or a Sentinel `master_for(...)` client, so writes go
to the master) or a `redis.asyncio.cluster.RedisCluster` (each key goes to its slot's owner; every
operation here touches one key, so no hash tags are needed). The client belongs to whoever made it:
`close()` leaves it open. Values are stored as given; the callers seal what is secret (the refresh
result is sealed as its cookie is; a login entry is empty).

Every call fails within `timeout_s` (a waiting get within wait_s + timeout_s) with
errors.StateUnavailable: each round trip runs under `asyncio.timeout`, so a client configured with
redis-py's default retries (10, with backoff) still cannot stretch one call. `add` is one
`SET key value NX GET PX ttl` (Redis 7.0 or later): atomic on the one node that owns the key.

A get that waits polls the key with a short backoff (10 ms doubling to 100 ms) until it appears or
wait_s passes. Not pub/sub or keyspace notifications: keyspace events must be switched on in the
server's config (managed Redis often forbids CONFIG) and in a Cluster are published only on the node
owning the key, so a waiter would need a subscription to every master, redone after each failover or
resharding; a notification lost in such a gap leaves the waiter waiting anyway. The poll is cheap
where it is used: the refresher waits at most ~0.2 s per call, one waiter per session per replica,
only while another replica refreshes that session. Imports errors only.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from oidcproxy.errors import StateUnavailable
from oidcproxy.redisconn import raise_if_cancelled

__all__ = ["RedisState"]

_FIRST_POLL_S, _MAX_POLL_S = 0.01, 0.1
_MAX_PLAIN_KEY = 100  # longer keys are stored under their SHA-256


class RedisState:
    """A SharedState on Redis: keys under `prefix`, each with a TTL in milliseconds."""

    def __init__(self, client: Any, prefix: str = "oidcproxy:", timeout_s: float = 1.0) -> None:
        self._client = client
        self._prefix = prefix
        self._timeout_s = timeout_s

    async def get(self, key: str, wait_s: float = 0.0) -> str | None:
        name = self._name(key)
        value = await self._get(name)
        if value is not None or wait_s <= 0:
            return value
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        pause = _FIRST_POLL_S
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(pause, left))
            pause = min(2 * pause, _MAX_POLL_S)
            value = await self._get(name)
            if value is not None:
                return value
        return None

    async def add(self, key: str, value: str, ttl_s: float) -> str | None:
        name, ms = self._name(key), _milliseconds(ttl_s)
        held = await self._call("SET NX GET", lambda: self._client.set(name, value, px=ms, nx=True, get=True))
        return _text(held)

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        name, ms = self._name(key), _milliseconds(ttl_s)
        await self._call("SET", lambda: self._client.set(name, value, px=ms))

    async def delete(self, key: str) -> None:
        name = self._name(key)
        await self._call("DEL", lambda: self._client.delete(name))

    async def close(self) -> None:
        """Nothing to release: the client is closed by whoever made it."""

    def _name(self, key: str) -> str:
        if len(key) > _MAX_PLAIN_KEY:
            key = "sha256/" + hashlib.sha256(key.encode()).hexdigest()
        return self._prefix + key

    async def _get(self, name: str) -> str | None:
        return _text(await self._call("GET", lambda: self._client.get(name)))

    async def _call(self, what: str, command: Callable[[], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await command()
        except (RedisError, OSError, TimeoutError) as exc:
            raise_if_cancelled(exc)
            raise StateUnavailable(f"redis {what}: {type(exc).__name__} {exc}".rstrip()) from None


def _milliseconds(ttl_s: float) -> int:
    return max(1, math.ceil(ttl_s * 1000))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return bytes(value).decode()
