"""Sessions in Redis Sentinel and Redis Cluster, through the real app and the embedded provider.

Sentinel: the master fails over (a planned switch, then a killed master) during a stream of signed-in
requests; every session survives, a request sees at most a brief run of 503s, and never a 401 or a
redirect to sign in. Cluster: sessions spread over the slots of three masters all open, and a
revocation by subject reaches entries on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import aiohttp
import pytest
import redis

from oidcproxy.web.appkeys import SESSIONS
from tests.integration.test_redis_sessions import HTML, Proxy, browser, proxies, session_cookies, sign_in
from tests.integration.test_store_conformance import load
from tests.support.redis import RedisCluster, RedisSentinel

__all__ = ["browser", "proxies"]  # fixtures shared with test_redis_sessions.py


async def stream(
    proxy: Any, browsers: list[aiohttp.ClientSession], stop: asyncio.Event
) -> list[tuple[float, int]]:
    """Signed-in requests, each read from Redis (no local cache), until `stop`: (when, status)."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[float, int]] = []
    while not stop.is_set():
        for i, b in enumerate(browsers):
            r = await b.get(proxy.make_url(f"/s{i}"), headers=HTML, allow_redirects=False)
            seen.append((loop.time(), r.status))
        await asyncio.sleep(0.02)
    return seen


def unavailable_for(seen: list[tuple[float, int]]) -> float:
    """Seconds from the first 503 to the last one."""
    times = [when for when, status in seen if status == 503]
    return times[-1] - times[0] if times else 0.0


@pytest.mark.parametrize("kill", [False, True], ids=["planned", "master-killed"])
async def test_sentinel_failover_during_a_stream_of_requests_keeps_every_session(
    proxies: Proxy, redis_sentinel: RedisSentinel, kill: bool
) -> None:
    proxy = await proxies.start(
        session_store_type="redis",
        session_cache_ttl="0s",
        redis_use_sentinel=True,
        redis_sentinel_master_name=redis_sentinel.master_name,
        redis_sentinel_connection_urls=redis_sentinel.sentinel_urls,
    )
    async with contextlib.AsyncExitStack() as stack:
        browsers = [
            await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
            for _ in range(3)
        ]
        for b in browsers:
            assert (await sign_in(b, proxy)).status == 200
        with redis_sentinel.master().admin() as master:
            assert master.execute_command("WAIT", 1, 5000) == 1  # the replica has every session
        stop = asyncio.Event()
        requests = asyncio.create_task(stream(proxy, browsers, stop))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(redis_sentinel.failover, kill=kill)
        await asyncio.sleep(0.5)
        stop.set()
        seen = await requests
        after = [await b.get(proxy.make_url("/after"), headers=HTML, allow_redirects=False) for b in browsers]
    counts = Counter(status for _, status in seen)
    assert set(counts) <= {200, 503}, counts  # never 401, never a redirect to sign in
    assert [a.status for a in after] == [200] * 3
    assert seen[-1][1] == 200  # every session back before the stream ended
    # A planned switch: the moment Sentinel swaps the roles. A killed master: Sentinel's down-after
    # (1 s here) and its election; then the first request asks the sentinels again.
    assert unavailable_for(seen) < (1.0 if not kill else 6.0), counts
    failures = getattr(proxy.app[SESSIONS], "failures", 0)
    assert failures == counts[503]  # each failure counted (and logged) once


async def test_cluster_sessions_spread_over_slots_open_and_revoke(
    proxies: Proxy, redis_cluster: RedisCluster
) -> None:
    proxy = await proxies.start(
        session_store_type="redis",
        redis_use_cluster=True,
        redis_cluster_connection_urls=redis_cluster.urls,
    )
    async with contextlib.AsyncExitStack() as stack:
        browsers = [
            await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
            for _ in range(8)
        ]
        for b in browsers:
            assert (await sign_in(b, proxy)).status == 200
            assert session_cookies(b)["_oidcproxy"].startswith("t.")
        holding = []
        for node in redis_cluster.nodes:
            with redis.Redis(*node.address) as r:
                holding.append(len(list(r.scan_iter("oidcproxy:s:*"))))
        assert sum(holding) == 8 and sum(1 for n in holding if n) >= 2, holding  # spread over nodes
        proxies.clock.advance(6)
        for i, b in enumerate(browsers):
            assert (await b.get(proxy.make_url(f"/c{i}"), headers=HTML)).status == 200
        alice = await load(proxy.app[SESSIONS], session_cookies(browsers[0]))
        assert alice is not None
        ended = await proxy.app[SESSIONS].end_sessions(subject=alice.identity.subject)
        assert ended == 8  # alice's sessions, on every node
        proxies.clock.advance(6)
        gone = await browsers[3].get(proxy.make_url("/x"), headers=HTML, allow_redirects=False)
        assert gone.status == 302
