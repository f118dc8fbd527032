"""The real-Redis fixtures (tests/support/redis.py) work as the session store will use them: redis-py's
asyncio client against Debian's redis-server, Sentinel and Cluster on loopback.

Clients here are built as the store must build them: no hidden retries (`Retry(NoBackoff(), 0)`)
and short timeouts, so a fault shows as one error, not as seconds of backoff.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError, ReadOnlyError, TimeoutError

from tests.support.redis import RedisSentinel, RedisServer, start_sentinel

NO_RETRY: dict[str, Any] = {
    "retry": Retry(NoBackoff(), 0),
    "socket_timeout": 1.0,
    "socket_connect_timeout": 1.0,
    "decode_responses": True,
}


def client(server: RedisServer, **overrides: Any) -> aioredis.Redis:
    return aioredis.Redis(**{**server.client_kwargs(), **NO_RETRY, **overrides})


async def test_standalone_stores_values_with_an_expiry(redis_server: RedisServer) -> None:
    async with aioredis.from_url(redis_server.url, **NO_RETRY) as r:
        assert await r.set("session:1", "sealed", ex=30)
        assert await r.get("session:1") == "sealed"
        assert 0 < await r.ttl("session:1") <= 30
        assert await r.set("session:2", "gone", px=50)
        await asyncio.sleep(0.2)
        assert await r.get("session:2") is None


async def test_acl_user_url_signs_in_and_wrong_credentials_are_refused(redis_factory: Any) -> None:
    server: RedisServer = redis_factory(username="proxy", password="s3cret")
    assert server.url == f"redis://proxy:s3cret@127.0.0.1:{server.port}/0"
    async with aioredis.from_url(server.url, **NO_RETRY) as r:
        assert await r.acl_whoami() == "proxy"
        assert await r.set("k", "v")
    for credentials in ({"username": "proxy", "password": "wrong"}, {"username": None, "password": None}):
        async with client(server, **credentials) as r:
            with pytest.raises(AuthenticationError):
                await r.get("k")


async def test_password_only_server(redis_factory: Any) -> None:
    server: RedisServer = redis_factory(password="s3cret")
    async with aioredis.from_url(server.url, **NO_RETRY) as r:
        assert await r.acl_whoami() == "default"
    async with client(server, password=None) as r:
        with pytest.raises(AuthenticationError):
            await r.ping()


async def test_nothing_persists_across_a_restart_unless_asked(redis_factory: Any) -> None:
    volatile: RedisServer = redis_factory()
    durable: RedisServer = redis_factory(persist=True)
    for server in (volatile, durable):
        async with client(server) as r:
            await r.set("session:1", "sealed", ex=60)
        port = server.port
        await asyncio.to_thread(server.restart)
        assert server.port == port
    async with client(volatile) as r:
        assert await r.get("session:1") is None
    async with client(durable) as r:
        assert await r.get("session:1") == "sealed"
        assert 0 < await r.ttl("session:1") <= 60


async def test_stopped_redis_is_a_connection_error_and_the_same_client_recovers(
    redis_server: RedisServer,
) -> None:
    async with client(redis_server) as r:
        await r.set("session:1", "sealed")
        redis_server.stop()
        with pytest.raises(ConnectionError):  # the pooled connection was closed by the server
            await r.get("session:1")
        with pytest.raises(ConnectionError):  # a new connection is refused
            await r.get("session:1")
        await asyncio.to_thread(redis_server.start)
        assert await r.set("session:2", "back")
        assert await r.get("session:1") is None  # no persistence by default


async def test_paused_redis_times_out_then_answers(redis_server: RedisServer) -> None:
    async with client(redis_server, socket_timeout=0.3) as r:
        await r.set("session:1", "sealed")
        with redis_server.paused():
            with pytest.raises(TimeoutError):
                await r.get("session:1")
            with pytest.raises(TimeoutError):  # a fresh connection is accepted by the kernel, then silence
                await r.get("session:1")
        assert await r.get("session:1") == "sealed"


async def test_tls_server_speaks_only_tls_and_is_trusted_through_its_ca(redis_factory: Any) -> None:
    server: RedisServer = redis_factory(tls=True, password="s3cret")
    assert server.tls is not None and server.url.startswith("rediss://")
    async with aioredis.from_url(server.url, ssl_ca_certs=str(server.tls.ca_path), **NO_RETRY) as r:
        assert await r.set("k", "v")
        assert await r.get("k") == "v"
    async with aioredis.from_url(server.url, **NO_RETRY) as r:  # system CAs: the trustme CA is unknown
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await r.ping()
    async with client(server, ssl=False) as r:  # plaintext to the TLS port
        with pytest.raises(ConnectionError):
            await r.ping()
    context = server.tls.context()
    assert context.verify_mode is ssl.CERT_REQUIRED


async def test_unix_socket(redis_factory: Any) -> None:
    server: RedisServer = redis_factory(unix_socket=True)
    assert server.unix_socket is not None
    async with aioredis.from_url(f"unix://{server.unix_socket}", **NO_RETRY) as r:
        assert await r.set("k", "v")
    async with client(server) as r:  # the TCP port serves the same data
        assert await r.get("k") == "v"


def sentinel_client(topology: RedisSentinel) -> aioredis.Sentinel:
    password = {"password": topology.sentinel_password} if topology.sentinel_password else {}
    return aioredis.Sentinel(
        topology.sentinel_addresses,
        sentinel_kwargs={"socket_timeout": 1.0, "socket_connect_timeout": 1.0, **password},
        password=topology.password,
        **NO_RETRY,
    )


async def test_sentinel_planned_failover_moves_writes_to_the_new_master(
    redis_sentinel: RedisSentinel,
) -> None:
    # No retry: the demoted master closed our pooled connection (as Sentinel does), so the pool
    # asks the sentinels again when it hands the connection out, and the first write goes through.
    sentinel = sentinel_client(redis_sentinel)
    master = sentinel.master_for(redis_sentinel.master_name)
    async with sentinel, master:
        old = redis_sentinel.master_address()
        assert await master.set("session:1", "before", ex=60)
        assert await master.wait(1, 2000) == 1  # the replica has it
        new = await asyncio.to_thread(redis_sentinel.failover)
        assert new != old
        assert await sentinel.discover_master(redis_sentinel.master_name) == new
        assert await master.set("session:2", "after", ex=60)
        assert await master.get("session:1") == "before"
    with redis_sentinel.node_at(new).admin() as on_new:
        assert on_new.get("session:2") == "after"
    async with client(redis_sentinel.node_at(old)) as on_old:  # now a replica: writes refused
        with pytest.raises(ReadOnlyError):
            await on_old.set("session:3", "stray")


async def test_sentinel_with_passwords_survives_a_killed_master() -> None:
    with start_sentinel(password="data-pw", sentinel_password="sentinel-pw") as topology:
        sentinel = sentinel_client(topology)
        master = sentinel.master_for(topology.master_name)
        async with sentinel, master:
            assert await master.set("session:1", "before", ex=60)
            assert await master.wait(1, 2000) == 1
            old = topology.master()
            new = await asyncio.to_thread(topology.failover, kill=True)
            assert new != old.address and not old.running
            assert await master.set("session:2", "after")  # no retry: the pool saw the dead socket
            assert await master.get("session:1") == "before"
            await asyncio.to_thread(topology.rejoin, old)
            assert old.info("replication")["role"] == "slave"


async def test_cluster_spreads_keys_over_the_three_masters(redis_cluster: Any) -> None:
    nodes = [ClusterNode(host, port) for host, port in redis_cluster.startup_nodes[:1]]
    cluster = RedisCluster(startup_nodes=nodes, **NO_RETRY)
    async with cluster:
        assert len(cluster.get_primaries()) == 3  # discovered from one startup node
        keys = [f"session:{i}" for i in range(60)]
        for key in keys:
            assert await cluster.set(key, key.upper(), ex=60)
        assert [await cluster.get(key) for key in keys] == [key.upper() for key in keys]
        assert 0 < await cluster.ttl(keys[0]) <= 60
    sizes = []
    for node in redis_cluster.nodes:
        with node.admin() as admin:
            assert admin.cluster("INFO")["cluster_state"] == "ok"
            sizes.append(admin.dbsize())
    assert sum(sizes) == len(keys) and all(sizes), sizes
