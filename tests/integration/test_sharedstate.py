"""One suite for every SharedState (style C11): in this process, a worker's client of the keeper over a
real unix socket, and RedisState on a real Redis: standalone, Sentinel (a `master_for` client) and
Cluster (three masters). Then Redis faults: stopped, paused, failed over.

The Redis topologies are module-scoped (a Cluster takes ~3 s to form); each test gets its own key
prefix, so tests never see each other's keys. Redis keeps its own time, so the TTL test waits in real
time there (a 1.2 s TTL) where the others move a FakeClock.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.process
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from oidcproxy.coordination import (
    LocalState,
    RedisState,
    SharedState,
    SocketState,
    keeper_socket,
    remove_keeper_socket,
    serve_keeper,
    start_keeper,
)
from oidcproxy.errors import StateUnavailable
from oidcproxy.model import FakeClock
from tests.support.redis import (
    RedisCluster as ClusterProcesses,
)
from tests.support.redis import (
    RedisSentinel,
    RedisServer,
    start_cluster,
    start_redis,
    start_sentinel,
)

REDIS_KINDS = ["redis", "sentinel", "cluster"]
# How the store engineer's client is meant to be set: ~1 s timeouts, no hidden retries.
STRICT: dict[str, Any] = {
    "socket_timeout": 1.0,
    "socket_connect_timeout": 1.0,
    "retry": Retry(NoBackoff(), 0),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@pytest.fixture(scope="module")
def module_sentinel() -> Iterator[RedisSentinel]:
    with start_sentinel() as topology:
        yield topology


@pytest.fixture(scope="module")
def module_cluster() -> Iterator[ClusterProcesses]:
    with start_cluster() as cluster:
        yield cluster


def standalone_client(server: RedisServer, **options: Any) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(**server.client_kwargs(), **options)


def sentinel_client(topology: RedisSentinel, **options: Any) -> redis.asyncio.Redis:
    sentinel = Sentinel(topology.sentinel_addresses, socket_timeout=1.0, socket_connect_timeout=1.0)
    return sentinel.master_for(topology.master_name, **options)


def cluster_client(cluster: ClusterProcesses, **options: Any) -> RedisCluster:
    nodes = [ClusterNode(host, port) for host, port in cluster.startup_nodes]
    return RedisCluster(startup_nodes=nodes, **options)


async def close_client(client: Any) -> None:
    """Close a client and, for a Sentinel master_for client, its connections to the sentinels."""
    manager = (
        getattr(client.connection_pool, "sentinel_manager", None)
        if hasattr(client, "connection_pool")
        else None
    )
    await client.aclose()
    for sentinel in manager.sentinels if manager is not None else ():
        await sentinel.aclose()


def redis_client(request: pytest.FixtureRequest, kind: str) -> Any:
    if kind == "redis":
        return standalone_client(request.getfixturevalue("module_redis"), **STRICT)
    if kind == "sentinel":
        return sentinel_client(request.getfixturevalue("module_sentinel"), **STRICT)
    return cluster_client(request.getfixturevalue("module_cluster"), **STRICT)


_REDIS_UNIT = 0.04  # Redis keeps its own time: a 30-unit TTL is 1.2 s of it


@dataclass
class Held:
    """A SharedState under test, its unit of time in seconds, and how to let `units` of it pass."""

    state: SharedState
    unit: float
    elapse: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["local", "socket", *REDIS_KINDS])
async def held(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Held]:
    async def advance(units: float) -> None:
        clock.advance(units)

    async def wait(units: float) -> None:
        await asyncio.sleep(units * _REDIS_UNIT)

    if request.param in REDIS_KINDS:
        client = redis_client(request, request.param)
        state = RedisState(client, prefix=f"test-{secrets.token_hex(4)}:", timeout_s=1.0)
        try:
            yield Held(state, _REDIS_UNIT, wait)
        finally:
            await state.close()
            await close_client(client)
        return
    if request.param == "local":
        local = LocalState(clock)
        yield Held(local, 1.0, advance)
        await local.close()
        return
    sock, path = keeper_socket()
    kept = LocalState(clock)
    server = await start_keeper(sock, kept)
    client = SocketState(path)
    try:
        yield Held(client, 1.0, advance)
    finally:
        await client.close()
        server.close()
        await kept.close()
        remove_keeper_socket(sock, path)


@pytest.fixture
def state(held: Held) -> SharedState:
    return held.state


async def test_add_sets_only_when_absent_and_answers_what_is_there(state: SharedState) -> None:
    assert await state.add("k", "first", 10) is None
    assert await state.add("k", "second", 10) == "first"
    assert await state.get("k") == "first"


async def test_set_overwrites_and_delete_removes(state: SharedState) -> None:
    await state.set("k", "a", 10)
    await state.set("k", "b", 10)
    assert await state.get("k") == "b"
    await state.delete("k")
    assert await state.get("k") is None
    assert await state.add("k", "c", 10) is None


async def test_values_expire_after_their_ttl(held: Held) -> None:
    state, ttl = held.state, 30 * held.unit
    await state.set("k", "v", ttl)
    assert await state.add("lock", "busy", ttl) is None
    await held.elapse(20)
    assert await state.get("k") == "v"
    assert await state.add("lock", "busy", ttl) == "busy"
    await held.elapse(10)
    assert await state.get("k") is None
    assert await state.add("k", "again", ttl) is None
    assert await state.add("lock", "busy", ttl) is None  # a dead lock holder's lock lapses


async def test_a_waiting_get_wakes_when_the_value_is_set(state: SharedState) -> None:
    waiting = asyncio.create_task(state.get("result", wait_s=20))
    await asyncio.sleep(0)  # let it reach the store before the set
    await state.set("other", "x", 10)
    await state.set("result", "done", 10)
    async with asyncio.timeout(10):  # bounded: it answers on the set, long before wait_s
        assert await waiting == "done"
    assert await state.get("missing", wait_s=0.01) is None


async def test_large_values_round_trip(state: SharedState) -> None:
    sealed = "x" * 200_000  # a sealed session with many groups
    await state.set("big", sealed, 10)
    assert await state.get("big") == sealed


def _keeper_process(sock: socket.socket) -> multiprocessing.process.BaseProcess:
    """The keeper as the supervisor runs it: a forked process serving the socket made before."""
    process = multiprocessing.get_context("fork").Process(
        target=serve_keeper, args=(sock, asyncio.new_event_loop), daemon=True
    )
    process.start()
    return process


async def test_a_restarted_keeper_is_reached_again_and_a_missing_one_fails_closed() -> None:
    sock, path = keeper_socket()
    client = SocketState(path, timeout_s=2)
    keeper = _keeper_process(sock)
    try:
        assert await client.add("login/x", "", 60) is None
        assert await client.add("login/x", "", 60) == ""
        keeper.kill()
        keeper.join()
        with pytest.raises(StateUnavailable):  # the callback answers 503, never accepts twice
            await client.add("login/x", "", 60)
        keeper = _keeper_process(sock)  # the supervisor restarts it on the same socket
        assert await client.add("login/y", "", 60) is None  # reconnected (the old state is gone)
    finally:
        keeper.kill()
        keeper.join()
        await client.close()
        remove_keeper_socket(sock, path)


async def test_keeper_socket_is_abstract_and_refuses_other_users(clock: FakeClock) -> None:
    """Nothing on disk (a read-only root works), and since an abstract socket has no file mode, the
    keeper itself refuses a peer of another user: here a real client process run as `nobody`."""
    import os
    import shutil
    import subprocess
    import sys

    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run a client as another user")
    sock, path = keeper_socket()
    assert path.startswith("\0")
    kept = LocalState(clock)
    server = await start_keeper(sock, kept)
    await kept.set("secret", "sealed-value", 60)
    probe = (
        "import socket,struct,json,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.connect('\\0'+sys.argv[1])\n"
        "body=json.dumps([1,'get','secret','',0,0]).encode()\n"
        "try:\n"
        "    s.sendall(struct.pack('>I',len(body))+body); print(repr(s.recv(100)))\n"
        "except OSError:\n"
        "    print('closed')\n"
    )
    try:
        mine = await asyncio.create_subprocess_exec(
            sys.executable, "-c", probe, path[1:], stdout=subprocess.PIPE
        )
        theirs = await asyncio.create_subprocess_exec(
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            sys.executable, "-c", probe, path[1:], stdout=subprocess.PIPE,
        )  # fmt: skip
        assert b"sealed-value" in (await mine.communicate())[0]  # the probe speaks the real protocol
        assert (await theirs.communicate())[0].strip() in (b"b''", b"closed")  # no answer
    finally:
        server.close()
        await kept.close()
        remove_keeper_socket(sock, path)


# -- Redis faults: each fails within the timeout with StateUnavailable (503), then recovers ---------

TIMEOUT_S = 0.5
_SLACK_S = 0.5  # scheduling on a busy 2-core machine; far below redis-py's own 5 s x 11 tries

CLIENTS = {"defaults": {}, "strict": STRICT}  # redis-py's defaults retry 10 times with backoff


async def fails_within_timeout(call: Awaitable[object]) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StateUnavailable):
        await call
    assert loop.time() - started < TIMEOUT_S + _SLACK_S


@pytest.fixture(params=list(CLIENTS))
async def on_own_redis(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[tuple[RedisServer, RedisState]]:
    client = standalone_client(redis_server, **CLIENTS[request.param])
    try:
        yield redis_server, RedisState(client, timeout_s=TIMEOUT_S)
    finally:
        await client.aclose()


async def test_a_stopped_redis_fails_within_the_timeout_and_works_again_once_back(
    on_own_redis: tuple[RedisServer, RedisState],
) -> None:
    server, state = on_own_redis
    assert await state.add("login/a", "", 60) is None
    await asyncio.to_thread(server.stop)
    await fails_within_timeout(state.add("login/a", "", 60))  # the callback answers 503
    await fails_within_timeout(state.get("refresh/result/x", wait_s=0.2))
    await asyncio.to_thread(server.start)
    assert await state.add("login/b", "", 60) is None  # no restart of the proxy needed
    assert await state.add("login/b", "", 60) == ""


async def test_a_paused_redis_fails_within_the_timeout_and_works_again_once_resumed(
    on_own_redis: tuple[RedisServer, RedisState],
) -> None:
    server, state = on_own_redis
    await state.set("refresh/result/x", "sealed", 60)
    with server.paused():  # accepts, never answers: a Redis too slow to wait for
        await fails_within_timeout(state.get("refresh/result/x"))
        await fails_within_timeout(state.add("refresh/lock/x", "busy", 15))
    assert await state.get("refresh/result/x") == "sealed"
    assert await state.add("refresh/lock/x", "busy", 15) is None  # nothing was half-written


def replicated(topology: RedisSentinel, name: str) -> None:
    """Until every replica holds `name`: replication is asynchronous, and a write the replica has not
    seen is lost in a failover whoever the client is (Redis's guarantee, not ours)."""
    deadline = time.monotonic() + 10
    for replica in topology.replicas():
        with replica.admin() as admin:
            while not admin.exists(name):
                assert time.monotonic() < deadline, f"{name} never reached {replica}"
                time.sleep(0.02)


@pytest.mark.parametrize("kill", [False, True], ids=["planned", "master-killed"])
async def test_a_sentinel_failover_costs_a_brief_run_of_state_unavailable_then_writes_reach_the_new_master(
    redis_sentinel: RedisSentinel, kill: bool
) -> None:
    client = sentinel_client(redis_sentinel, **STRICT)
    state = RedisState(client, timeout_s=TIMEOUT_S)
    loop = asyncio.get_running_loop()
    try:
        await state.set("refresh/result/x", "sealed", 60)
        await asyncio.to_thread(replicated, redis_sentinel, "oidcproxy:refresh/result/x")
        failover = asyncio.create_task(asyncio.to_thread(redis_sentinel.failover, kill=kill))
        while not failover.done():  # a stream of calls across the switch: answers or 503s, all bounded
            started = loop.time()
            with contextlib.suppress(StateUnavailable):
                assert await state.add("login/during", "", 60) in (None, "")
            assert loop.time() - started < TIMEOUT_S + _SLACK_S
            await asyncio.sleep(0.05)
        new_master = await failover
        after = 0
        while True:  # once the sentinels name the new master, at most a brief run of 503s
            try:
                assert await state.add("login/after", "", 60) is None
                break
            except StateUnavailable:
                after += 1
                assert after < 5, "the state did not recover after the failover"
                await asyncio.sleep(0.1)
        assert await state.get("refresh/result/x") == "sealed"
        with redis_sentinel.node_at(new_master).admin() as admin:
            assert admin.exists("oidcproxy:login/after") == 1  # written to the new master
    finally:
        await close_client(client)


async def test_long_keys_are_stored_hashed_under_the_prefix(module_redis: RedisServer) -> None:
    client = standalone_client(module_redis, **STRICT)
    state = RedisState(client, prefix="p1:")
    try:
        long_key = "refresh/lock/" + "x" * 5000
        assert await state.add(long_key, "busy", 60) is None
        assert await state.add(long_key, "busy", 60) == "busy"
        with module_redis.admin() as admin:
            names = admin.keys("p1:*")
        assert len(names) == 1 and len(names[0]) < 100
    finally:
        await client.aclose()
