"""Sessions in a real redis-server, through the real app and the embedded provider on loopback.

Standalone Redis: sign-in with a ticket cookie, a 4,000-group session through the autopilot, nothing
readable in Redis, revocation by deleting the entry, sessions surviving a restart of the proxy, and
the faults: Redis stopped or paused gives 503 with Retry-After (never a sign-in), and the same
process recovers when Redis returns. The proxy's clock is a FakeClock, moved past the local cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.coordination.redis import RedisState
from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web import build_app
from oidcproxy.web.appkeys import EMBEDDED_IDP, SESSIONS, SHARED
from tests.factories import make_settings
from tests.support.devidp import dev_login
from tests.support.redis import RedisServer

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
MANY_GROUPS = [f"group-{i:04d}-{(i * 7919) % 10007:05d}" for i in range(4000)]


class Proxy:
    """Builds proxies on fresh ports that share one clock and one Redis, as replicas or restarts do."""

    def __init__(self, aiohttp_server: Any, upstream: TestServer, port: Any, clock: FakeClock) -> None:
        self._server, self._upstream, self._port, self.clock = aiohttp_server, upstream, port, clock

    async def start(self, **overrides: Any) -> TestServer:
        port = self._port()
        values: dict[str, Any] = {
            "upstream": [str(self._upstream.make_url("/"))],
            "oidc_type": "embedded",
            "http_address": f"127.0.0.1:{port}",
            **overrides,
        }
        server: TestServer = await self._server(build_app(make_settings(**values), self.clock), port=port)
        return server


@pytest.fixture
def proxies(aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any) -> Proxy:
    return Proxy(aiohttp_server, upstream, unused_tcp_port_factory, FakeClock(system_clock()))


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def sign_in(
    browser: aiohttp.ClientSession, proxy: TestServer, *, groups: list[str] | None = None
) -> aiohttp.ClientResponse:
    """Sign in as alice at the embedded provider; the upstream's echo of the first request after it."""
    first = await browser.get(proxy.make_url("/app"), headers=HTML, allow_redirects=False)
    assert first.status == 302
    start = await browser.get(proxy.make_url("/oauth2/start").with_query(rd="/app"), allow_redirects=False)
    callback = await dev_login(
        browser,
        start.headers["Location"],
        email="alice@example.com",
        name="Alice Liddell",
        groups=",".join(groups if groups is not None else ["admins", "dev"]),
    )
    done = await browser.get(callback, allow_redirects=False)
    assert done.status == 302, await done.text()
    return await browser.get(proxy.make_url(URL(done.headers["Location"]).path), headers=HTML)


def session_cookies(browser: aiohttp.ClientSession) -> dict[str, str]:
    return {c.key: c.value for c in browser.cookie_jar if c.key.startswith("_oidcproxy")}


async def dump(server: RedisServer) -> list[str]:
    """Every key and every value Redis holds, as text."""
    out: list[str] = []
    async with aioredis.from_url(server.url) as r:
        async for key in r.scan_iter():
            out.append(key.decode())
            kind = (await r.type(key)).decode()
            values = [await r.get(key)] if kind == "string" else list(await r.smembers(key))
            out.extend(v.decode(errors="replace") for v in values)
    return out


async def test_redis_store_keeps_a_small_ticket_and_redis_holds_nothing_readable(
    proxies: Proxy, browser: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    proxy = await proxies.start(session_store_type="redis", redis_connection_url=redis_server.url)
    echo = await sign_in(browser, proxy)
    assert echo.status == 200
    seen = (await echo.json())["headers"]
    assert seen["X-Forwarded-Email"] == "alice@example.com"
    cookies = session_cookies(browser)
    assert list(cookies) == ["_oidcproxy"] and cookies["_oidcproxy"].startswith("t.")
    assert len(cookies["_oidcproxy"]) < 200
    stored = await dump(redis_server)
    assert any(k.startswith("oidcproxy:s:") for k in stored)
    secrets = ["alice", "example.com", "Alice", "admins", seen["X-Forwarded-User"]]
    leaked = [(s, v[:60]) for s in secrets for v in stored if s in v]
    assert leaked == []
    async with aioredis.from_url(redis_server.url) as r:
        (entry,) = [k async for k in r.scan_iter("oidcproxy:s:*")]
        assert 167 * 3600 < await r.ttl(entry) <= 168 * 3600  # the session's own lifetime


async def test_with_redis_configured_refresh_and_login_state_are_shared_through_it(
    proxies: Proxy, redis_server: RedisServer
) -> None:
    for store_type in ("cookie", "redis"):  # the autopilot too
        proxy = await proxies.start(session_store_type=store_type, redis_connection_url=redis_server.url)
        assert isinstance(proxy.app[SHARED], RedisState)
    plain = await proxies.start()
    assert not isinstance(plain.app[SHARED], RedisState)


async def test_autopilot_moves_a_4000_group_session_to_redis_and_keeps_small_ones_in_the_cookie(
    proxies: Proxy, aiohttp_server: Any, redis_server: RedisServer
) -> None:
    # store type: cookie; the test upstream's header limit is aiohttp's 8 KB, so no groups header there
    proxy = await proxies.start(redis_connection_url=redis_server.url, pass_user_headers=False)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as small:
        assert (await sign_in(small, proxy)).status == 200
        assert not session_cookies(small)["_oidcproxy"].startswith("t.")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as large:
        echo = await sign_in(large, proxy, groups=MANY_GROUPS)
        assert echo.status == 200
        me = await large.get(proxy.make_url("/oauth2/userinfo"))
        assert (await me.json())["groups"] == MANY_GROUPS
        cookies = session_cookies(large)
        assert list(cookies) == ["_oidcproxy"] and len(cookies["_oidcproxy"]) < 200
        proxies.clock.advance(6)  # past the local cache: read from Redis again
        assert (await large.get(proxy.make_url("/oauth2/auth"))).status == 202
        me = await large.get(proxy.make_url("/oauth2/userinfo"))
        assert len((await me.json())["groups"]) == 4000


async def test_deleting_the_entry_revokes_the_session_within_the_cache_ttl(
    proxies: Proxy, browser: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    proxy = await proxies.start(session_store_type="redis", redis_connection_url=redis_server.url)
    await sign_in(browser, proxy)
    async with aioredis.from_url(redis_server.url) as r:
        assert await r.delete(*[k async for k in r.scan_iter("oidcproxy:s:*")]) == 1
    assert (await browser.get(proxy.make_url("/x"), headers=HTML)).status == 200  # cached here
    proxies.clock.advance(6)  # --session-cache-ttl is 5s
    gone = await browser.get(proxy.make_url("/x"), headers=HTML, allow_redirects=False)
    assert gone.status == 302 and "/oauth2/sign_in" in gone.headers["Location"]
    assert (await browser.get(proxy.make_url("/oauth2/auth"))).status == 401


async def test_sessions_survive_a_restart_of_the_proxy_and_a_prepended_secret(
    proxies: Proxy, browser: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    first = await proxies.start(session_store_type="redis", redis_connection_url=redis_server.url)
    await sign_in(browser, first)
    await first.close()
    rotated = "N" * 32
    again = await proxies.start(
        session_store_type="redis",
        redis_connection_url=redis_server.url,
        cookie_secret=[rotated, "0123456789abcdef0123456789abcdef"],
    )
    echo = await browser.get(again.make_url("/after-restart"), headers=HTML, allow_redirects=False)
    assert echo.status == 200
    assert (await echo.json())["headers"]["X-Forwarded-Email"] == "alice@example.com"


async def test_redis_stopped_is_503_never_a_sign_in_and_the_same_process_recovers(
    proxies: Proxy, browser: aiohttp.ClientSession, redis_factory: Any
) -> None:
    server: RedisServer = redis_factory(persist=True)
    proxy = await proxies.start(session_store_type="redis", redis_connection_url=server.url)
    await sign_in(browser, proxy)
    server.stop()
    proxies.clock.advance(6)
    page = await browser.get(proxy.make_url("/x"), headers=HTML, allow_redirects=False)
    assert page.status == 503 and page.headers["Retry-After"]
    assert "session store" in await page.text() and "Set-Cookie" not in page.headers
    api = await browser.get(proxy.make_url("/api"), headers=JSON, allow_redirects=False)
    assert api.status == 503 and "session store" in (await api.json())["message"]
    assert (await browser.get(proxy.make_url("/oauth2/auth"))).status == 503
    store = proxy.app[SESSIONS]
    assert getattr(store, "failures", 0) >= 3
    server.start()
    back = await browser.get(proxy.make_url("/x"), headers=HTML, allow_redirects=False)
    assert back.status == 200


async def test_a_paused_redis_is_503_within_the_timeout(
    proxies: Proxy, browser: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    proxy = await proxies.start(
        session_store_type="redis", redis_connection_url=redis_server.url, redis_timeout="500ms"
    )
    await sign_in(browser, proxy)
    proxies.clock.advance(6)
    with redis_server.paused():
        began = time.monotonic()
        answers = await asyncio.gather(
            *(browser.get(proxy.make_url(f"/p{i}"), headers=HTML, allow_redirects=False) for i in range(3))
        )
        took = time.monotonic() - began
    assert [a.status for a in answers] == [503] * 3
    assert took < 3  # redis-py's defaults (10 retries, 5 s timeouts) would take about a minute
    assert (await browser.get(proxy.make_url("/x"), headers=HTML)).status == 200


async def test_back_channel_logout_deletes_the_redis_entry_and_every_replica_refuses_the_cookie(
    proxies: Proxy, browser: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    """Redis mode: a logout from the provider deletes the session's entry (through the sid index), so
    another replica sharing the Redis refuses a copy of the cookie once its local cache has expired."""
    one = await proxies.start(session_store_type="redis", redis_connection_url=redis_server.url)
    await sign_in(browser, one)
    cookies = session_cookies(browser)
    two = await proxies.start(session_store_type="redis", redis_connection_url=redis_server.url)
    async with aiohttp.ClientSession(cookies=cookies) as copy:
        assert (await copy.get(two.make_url("/x"), headers=HTML)).status == 200  # served by replica two
    idp = one.app[EMBEDDED_IDP]
    (provider_session,) = idp.store.sessions.values()
    assert await idp.backchannel_logout(sid=provider_session.sid) == {"oidcproxy": 200}
    async with aioredis.from_url(redis_server.url) as r:
        assert [k async for k in r.scan_iter("oidcproxy:s:*")] == []  # the entry is gone
    proxies.clock.advance(6)  # past --session-cache-ttl on replica two
    async with aiohttp.ClientSession(cookies=cookies) as copy:
        assert (await copy.get(two.make_url("/oauth2/auth"))).status == 401
