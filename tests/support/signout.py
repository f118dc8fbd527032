"""What the sign-out tests against real providers (Keycloak, Hydra) share: the proxy session a browser
holds, a stolen copy of its cookie replayed, a fresh login started, a WebSocket watched while the
provider logs the person out, and a token endpoint asked to redeem a refresh token.

    session = session_of(browser)          # the proxy's Session, opened with the test cookie secret
    assert await replayed(proxy, stolen) == 401
    where, body = await login_page(proxy, browser)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.config import cookie_key_material
from oidcproxy.model import Session
from oidcproxy.sessions import KeyRing, SessionCodec
from oidcproxy.sessions.cookies import join_cookie
from tests.factories import COOKIE_SECRET
from tests.support.nginx import CLOSED
from tests.support.workers import session_cookies

__all__ = ["HTML", "login_page", "redeem_refresh_token", "replayed", "session_of", "websocket_closed_by"]

HTML = {"Accept": "text/html"}


def session_of(browser: aiohttp.ClientSession) -> Session:
    """The proxy's session in the browser's cookie, opened with the test cookie secret."""
    sealed = join_cookie("_oidcproxy", session_cookies(browser.cookie_jar))
    assert sealed is not None
    session = SessionCodec(KeyRing([cookie_key_material(COOKIE_SECRET)]), "_oidcproxy").decode(sealed)
    assert session is not None
    return session


async def replayed(proxy: TestServer, cookies: dict[str, str]) -> int:
    """The status another browser gets for /oauth2/userinfo with a copy of `cookies`."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as thief:
        thief.cookie_jar.update_cookies(cookies, proxy.make_url("/"))
        async with thief.get(proxy.make_url("/oauth2/userinfo")) as resp:
            return resp.status


async def login_page(proxy: TestServer, browser: aiohttp.ClientSession) -> tuple[URL, str]:
    """Start a new login and follow the redirects: where they stop, and that page."""
    async with browser.get(proxy.make_url("/oauth2/start"), allow_redirects=False) as start:
        assert start.status == 302
        location = start.headers["Location"]
    async with browser.get(location, headers=HTML) as page:
        return page.url, await page.text()


async def redeem_refresh_token(
    token_url: str, refresh_token: str, client_id: str, secret: str
) -> tuple[int, str]:
    """Ask the provider for new tokens as the proxy's client would: (status, OAuth error or "")."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    auth = {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}
    async with aiohttp.ClientSession() as http:
        async with http.post(token_url, data=form, headers=auth) as reply:
            body = await reply.json()
            return reply.status, str(body.get("error", ""))


async def websocket_closed_by(
    browser: aiohttp.ClientSession,
    proxy: TestServer,
    upstream: TestServer,
    logout: Callable[[], Awaitable[None]],
) -> tuple[aiohttp.WSMessage, int]:
    """Open a WebSocket through the proxy to `upstream` (tests.support.nginx.big_header_upstream),
    echo once, run `logout` at the provider: the close the browser got and the code the upstream got."""
    async with browser.ws_connect(proxy.make_url("/ws")) as ws:
        await ws.receive_json()
        await ws.send_str("before")
        assert await ws.receive_str() == "echo:before"
        await logout()
        closing = await asyncio.wait_for(ws.receive(), 10)
    return closing, await asyncio.wait_for(upstream.app[CLOSED].get(), 10)
