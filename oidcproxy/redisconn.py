"""The Redis client, built once from a RedisConfig: standalone, Sentinel's master, or a Cluster.

The retry policy is chosen here, deliberately: redis-py's defaults (10 retries with backoff, 5 s socket
timeouts) stretch one call against a stopped or paused Redis to many seconds, which users see as a
hung sign-in. Here a call gets one immediate reconnect after a dropped connection (a pooled connection
that Redis closed, a failed-over master) and no retry after a timeout, so it fails within about
`timeout_s`; the stores turn that into a 503. Writes reach the master: Sentinel's `master_for` client
asks the sentinels on reconnect, and the Cluster client sends each key to its slot's owner.
Imports redis-py only; `web.app` builds the RedisConfig from the settings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

__all__ = ["REDIS_FAULTS", "RedisClient", "RedisConfig", "connect", "raise_if_cancelled"]

RedisClient = aioredis.Redis | RedisCluster
REDIS_FAULTS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
"""What a Redis call raises when Redis is unreachable, slow, failing over or refusing."""


def raise_if_cancelled(exc: BaseException) -> None:
    """Re-raise a cancellation that redis-py turned into a connection error.

    Cancelled while (re)connecting, redis-py may raise ConnectionError instead of CancelledError. Taken
    for a Redis fault, the cancellation is lost and the task runs on: a background loop cancelled at
    shutdown then never ends, and the app's cleanup waits for it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """How to reach Redis: one URL, or a Sentinel master, or Cluster nodes."""

    url: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    sentinel_master: str = ""
    sentinel_urls: tuple[str, ...] = ()
    sentinel_password: str = field(default="", repr=False)
    cluster_urls: tuple[str, ...] = ()
    ca_path: str = ""
    insecure_skip_verify: bool = False
    idle_check_s: float = 0.0
    timeout_s: float = 1.0


def connect(config: RedisConfig) -> RedisClient:
    """The client; nothing is connected yet (the pool connects on the first call)."""
    if config.sentinel_master:
        return _sentinel(config)
    if config.cluster_urls:
        return _cluster(config)
    kwargs = _common(config) | _tls(config, config.url)
    return aioredis.Redis.from_url(config.url, **kwargs)


def _common(config: RedisConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": config.timeout_s,
        "socket_connect_timeout": config.timeout_s,
        # One immediate reconnect after a dropped connection; a timeout is never retried.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        # Before reusing a connection idle this long, PING it (a closed one is replaced, not failed).
        "health_check_interval": config.idle_check_s,
    }
    if config.username:
        kwargs["username"] = config.username
    if config.password:
        kwargs["password"] = config.password
    return kwargs


def _tls(config: RedisConfig, url: str) -> dict[str, Any]:
    if urlsplit(url).scheme != "rediss":
        return {}
    kwargs: dict[str, Any] = {}
    if config.ca_path:
        kwargs["ssl_ca_certs"] = config.ca_path
    if config.insecure_skip_verify:
        kwargs.update(ssl_cert_reqs="none", ssl_check_hostname=False)
    return kwargs


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _sentinel(config: RedisConfig) -> aioredis.Redis:
    first = config.sentinel_urls[0]
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": config.timeout_s,
        "socket_connect_timeout": config.timeout_s,
        "retry": Retry(NoBackoff(), 0),
    } | _tls(config, first)
    password = config.sentinel_password or unquote(urlsplit(first).password or "")
    if password:
        sentinel_kwargs["password"] = password
    if urlsplit(first).scheme == "rediss":
        sentinel_kwargs["ssl"] = True
    sentinels = [_address(u) for u in config.sentinel_urls]
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    master_kwargs = _common(config) | _tls(config, config.url or first)
    if urlsplit(config.url or first).scheme == "rediss":
        master_kwargs["ssl"] = True
    master: aioredis.Redis = sentinel.master_for(config.sentinel_master, **master_kwargs)
    return master


def _cluster(config: RedisConfig) -> RedisCluster:
    first = config.cluster_urls[0]
    kwargs = _common(config) | _tls(config, first)
    password = kwargs.get("password") or unquote(urlsplit(first).password or "")
    if password:
        kwargs["password"] = password
    if urlsplit(first).scheme == "rediss":
        kwargs["ssl"] = True
    nodes = [ClusterNode(*_address(u)) for u in config.cluster_urls]
    return RedisCluster(startup_nodes=nodes, **kwargs)
