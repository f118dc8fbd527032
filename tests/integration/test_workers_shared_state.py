"""`oidcproxy --workers 2` against providers that rotate refresh tokens and refuse a reused one.

Both providers run for real: the npm oidc-provider (which also revokes the whole grant when a rotated
token comes back) and our embedded one, served here. The proxy runs as an operator starts it, in its
own processes on real time, so the test waits the few seconds until the 4-second tokens are due for
refresh. IdPTap counts the grants the token endpoint sees. Each request opens its own connection, so
that SO_REUSEPORT spreads them over both workers.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractCookieJar
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.idp import IdPClient, IdPConfig
from oidcproxy.idp import build_app as build_idp_app
from tests.factories import COOKIE_SECRET, walk_login
from tests.support.devidp import dev_login
from tests.support.nodeidp import ensure_node_modules, provider_login, start_node_idp
from tests.support.oidcflow import USERS, IdPTap
from tests.support.process import stop

TTL_S = 4  # refresh is due a fifth of the lifetime before expiry: 3.2 s after sign-in
PARALLEL = 16
_BOUND_S = 30.0

Login = Callable[[aiohttp.ClientSession, str], Awaitable[str]]


@dataclass
class Provider:
    issuer: str
    paths: tuple[str, str]  # authorization endpoint, JWKS
    client_id: str
    client_secret: str
    login: Login


@pytest.fixture(params=["node", "embedded"])
async def rotating(
    request: pytest.FixtureRequest, aiohttp_server: Any, unused_tcp_port_factory: Any
) -> AsyncIterator[Provider]:
    if request.param == "node":
        ensure_node_modules()
        ttl = {"AccessToken": TTL_S, "IdToken": TTL_S}
        with start_node_idp(users=USERS, skip_consent=True, ttl=ttl, rotate_refresh_tokens=True) as idp:

            async def node_login(session: aiohttp.ClientSession, url: str) -> str:
                return await provider_login(session, url, login="alice")

            yield Provider(idp.issuer, ("/auth", "/jwks"), idp.client_id, idp.client_secret, node_login)
        return
    port = unused_tcp_port_factory()
    issuer = f"http://127.0.0.1:{port}"
    client = IdPClient("oidcproxy", "oidcproxy-secret", allow_loopback_redirects=True)
    config = IdPConfig(
        issuer, (client,), access_token_ttl=TTL_S, id_token_ttl=TTL_S, rotate_refresh_tokens=True
    )
    await aiohttp_server(build_idp_app(config)[0], port=port)

    async def embedded_login(session: aiohttp.ClientSession, url: str) -> str:
        return await dev_login(session, url, email="alice@example.com", groups="admins")

    yield Provider(issuer, ("/authorize", "/jwks"), "oidcproxy", "oidcproxy-secret", embedded_login)


@pytest.fixture
async def tap(rotating: Provider, aiohttp_server: Any) -> IdPTap:
    return await IdPTap(rotating.issuer).start(aiohttp_server)


@pytest.fixture
def two_workers(rotating: Provider, tap: IdPTap, upstream: TestServer, unused_tcp_port: int) -> Iterator[URL]:
    """The proxy with two workers; its token endpoint is the tap's."""
    address = f"127.0.0.1:{unused_tcp_port}"
    authorize, jwks = rotating.paths
    command = [
        sys.executable, "-m", "oidcproxy", "--workers", "2", "--http-address", address,
        "--upstream", str(upstream.make_url("/")), "--oidc-issuer-url", rotating.issuer,
        "--client-id", rotating.client_id, "--client-secret", rotating.client_secret,
        "--skip-oidc-discovery", "--login-url", rotating.issuer + authorize,
        "--redeem-url", tap.url("/token"), "--oidc-jwks-url", rotating.issuer + jwks,
        "--cookie-secret", COOKIE_SECRET, "--cookie-secure=false", "--email-domain", "example.com",
        "--request-logging=false",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == f"oidcproxy listening on {address} (2 workers)", line
        yield URL(f"http://{address}")
    finally:
        stop(process)


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@dataclass(frozen=True)
class Reply:
    status: int
    set_cookies: list[SimpleCookie]


async def fresh_connection_get(url: URL, cookies: dict[str, str]) -> Reply:
    """One request on its own connection (a new TCP source port, so any worker may take it)."""
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Cookie": header, "Accept": "application/json"}
        async with session.get(url, headers=headers, allow_redirects=False) as resp:
            await resp.read()
            return Reply(resp.status, [SimpleCookie(v) for v in resp.headers.getall("Set-Cookie", ())])


def session_cookies(jar: AbstractCookieJar) -> dict[str, str]:
    return {c.key: c.value for c in jar if c.key.startswith("_oidcproxy") and "_csrf_" not in c.key}


def deletes_session(reply: Reply) -> bool:
    """Does this response tell the browser to drop (a chunk of) the session cookie?"""
    for cookie in reply.set_cookies:
        for name, morsel in cookie.items():
            if name.startswith("_oidcproxy") and "_csrf_" not in name:
                if not morsel.value or morsel["max-age"] in ("0", "-1"):
                    return True
    return False


def refreshed(reply: Reply) -> bool:
    names = {n for c in reply.set_cookies for n, m in c.items() if n.startswith("_oidcproxy") and m.value}
    return bool(names)


async def sign_in(browser: aiohttp.ClientSession, base: URL, rotating: Provider) -> float:
    final = await walk_login(browser, base, "/who", lambda s, url, login: rotating.login(s, url), login="a")
    assert final.status == 200, await final.text()
    return asyncio.get_running_loop().time()


async def burst(base: URL, cookies: dict[str, str], tag: str) -> list[Reply]:
    urls = [base.with_path(f"/{tag}{i}") for i in range(PARALLEL)]
    return await asyncio.gather(*(fresh_connection_get(url, cookies) for url in urls))


async def test_parallel_requests_with_the_old_cookie_share_one_refresh_and_nobody_is_signed_out(
    two_workers: URL, rotating: Provider, tap: IdPTap, browser: aiohttp.ClientSession
) -> None:
    signed_in = await sign_in(browser, two_workers, rotating)
    old = session_cookies(browser.cookie_jar)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, signed_in + TTL_S * 0.8 + 0.3 - loop.time()))  # real time: refresh due
    during = await burst(two_workers, old, "during")  # the refresh happens while these are in flight
    after = await burst(two_workers, old, "after")  # the old cookie, right after the refresh
    for reply in during + after:
        assert reply.status == 200
        assert not deletes_session(reply)
        assert refreshed(reply)  # each gets the refreshed session's cookie
    assert tap.grants["refresh_token"] == 1
    # The new cookie needs no refresh; at its own refresh time it refreshes once more (a replayed
    # token would have made oidc-provider revoke the grant, and that refresh would fail).
    new = {n: m.value for n, m in after[0].set_cookies[0].items()}
    quiet = await fresh_connection_get(two_workers.with_path("/quiet"), new)
    assert quiet.status == 200 and not quiet.set_cookies
    await asyncio.sleep(TTL_S * 0.8 + 0.3)
    again = await burst(two_workers, new, "again")
    assert [r.status for r in again] == [200] * PARALLEL
    assert not any(deletes_session(r) for r in again)
    assert tap.grants["refresh_token"] == 2


async def test_a_login_callback_is_accepted_once_across_workers(
    two_workers: URL, rotating: Provider, tap: IdPTap, browser: aiohttp.ClientSession
) -> None:
    start = await browser.get(two_workers.with_path("/oauth2/start"), allow_redirects=False)
    assert start.status == 302
    login_cookie = {c.key: c.value for c in browser.cookie_jar if "_csrf_" in c.key}
    callback = URL(await rotating.login(browser, start.headers["Location"]))
    callback = two_workers.with_path(callback.path).with_query(callback.query)
    first = await fresh_connection_get(callback, login_cookie)
    assert first.status == 302
    assert refreshed(first)  # signed in
    replays = await asyncio.gather(*(fresh_connection_get(callback, login_cookie) for _ in range(8)))
    assert [r.status for r in replays] == [400] * 8
    assert tap.grants["authorization_code"] == 1  # no replay reached the provider
