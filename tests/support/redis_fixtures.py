"""pytest fixtures over `tests/support/redis.py`, registered by tests/conftest.py (`pytest_plugins`).

- `redis_server`: a standalone redis-server, no password, no persistence (function scope: tests
  stop, restart and pause it).
- `redis_factory(**options)`: more standalone servers with `start_redis` options (password,
  username, tls, unix_socket, persist), all stopped at the end of the test.
- `redis_sentinel`: a master, a replica and three sentinels (function scope; starts in ~0.2 s, so
  each test gets a fresh topology whose first `failover()` takes ~1 s, or ~3 s with kill=True).
- `redis_cluster`: three masters made by `redis-cli --cluster create` (function scope; ~3 s, most of
  it redis-cli's own one-second polls while the nodes meet).

A missing Redis is an error naming scripts/setup.sh, not a skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.redis import (
    RedisCluster,
    RedisSentinel,
    RedisServer,
    start_cluster,
    start_redis,
    start_sentinel,
)

__all__ = ["redis_cluster", "redis_factory", "redis_sentinel", "redis_server"]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server, no password, no persistence; stop/start/restart/paused()."""
    with start_redis() as server:
        yield server


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """start_redis(**options) for this test: password, username, tls, unix_socket, persist."""
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> RedisServer:
            return stack.enter_context(start_redis(**options))

        yield make


@pytest.fixture
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A master, a replica, three sentinels (quorum 2, down-after 1 s); failover(kill=...)."""
    with start_sentinel() as topology:
        yield topology


@pytest.fixture
def redis_cluster() -> Iterator[RedisCluster]:
    """Three cluster masters, every slot assigned, cluster_state:ok on each."""
    with start_cluster() as cluster:
        yield cluster
