"""`oidcproxy --workers 2` against providers that rotate refresh tokens and refuse a reused one.

Both providers run for real: the npm oidc-provider (which also revokes the whole grant when a rotated
token comes back) and our embedded one, served here. The proxy runs as an operator starts it, in its
own processes on real time, so the test waits the few seconds until the 4-second tokens are due for
refresh. IdPTap counts the grants the token endpoint sees. The same test runs against Keycloak and
Hydra in test_keycloak.py and test_hydra.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.idp import IdPClient, IdPConfig
from oidcproxy.idp import build_app as build_idp_app
from tests.factories import walk_login
from tests.support.devidp import dev_login
from tests.support.nodeidp import ensure_node_modules, provider_login, start_node_idp
from tests.support.oidcflow import USERS, IdPTap
from tests.support.workers import (
    PARALLEL,
    burst,
    deletes_session,
    fresh_connection_get,
    refreshed,
    session_cookies,
    start_workers,
)

TTL_S = 4  # refresh is due a fifth of the lifetime before expiry: 3.2 s after sign-in
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
    authorize, jwks = rotating.paths
    args = [
        "--upstream", str(upstream.make_url("/")), "--oidc-issuer-url", rotating.issuer,
        "--client-id", rotating.client_id, "--client-secret", rotating.client_secret,
        "--skip-oidc-discovery", "--login-url", rotating.issuer + authorize,
        "--redeem-url", tap.url("/token"), "--oidc-jwks-url", rotating.issuer + jwks,
        "--email-domain", "example.com",
    ]  # fmt: skip
    with start_workers(args, address=f"127.0.0.1:{unused_tcp_port}") as base:
        yield base


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def sign_in(browser: aiohttp.ClientSession, base: URL, rotating: Provider) -> float:
    final = await walk_login(browser, base, "/who", lambda s, url, login: rotating.login(s, url), login="a")
    assert final.status == 200, await final.text()
    return asyncio.get_running_loop().time()


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
