"""A session over 30 KB (an ID token with 1,700+ groups from the npm oidc-provider) end to end through
NGINX in the sidecar topology: login completes, the session is split over many cookies that come back
in one Cookie line, and the upstream gets the full bearer header and X-Forwarded-Groups on plain
requests and on a WebSocket upgrade.

The proxy's cookies are kept by hand: aiohttp's CookieJar silently stops sending cookies once the
Cookie header would pass 8,190 bytes, where a browser sends them all.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.web.app import build_app
from tests.factories import make_settings
from tests.support.nginx import Tls, sidecar_server
from tests.support.nodeidp import NodeIdP, provider_login, start_node_idp

pytestmark = pytest.mark.nginx

GROUPS = 1700  # synthetic `group-0001`…: they compress well in the sealed session
# Directory-style group ids (Entra ID sends GUIDs) barely compress: with them the sealed session
# passes 30 KB while the ID token, sent whole as one bearer header line, stays under 64 KiB.
_RNG = random.Random(5)
GUIDS = [str(uuid.UUID(int=_RNG.getrandbits(128), version=4)) for _ in range(250)]
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def huge_idp() -> Iterator[NodeIdP]:
    groups = ["admins", *GUIDS]
    users = {"alice": {"email": "alice@example.com", "email_verified": True, "groups": groups}}
    with start_node_idp(users=users, extra_groups=GROUPS, skip_consent=True) as idp:
        yield idp


@pytest.fixture
async def proxy(aiohttp_server: Any, app_upstream: TestServer, huge_idp: NodeIdP) -> TestServer:
    settings = make_settings(
        upstream=[str(app_upstream.make_url("/"))],
        oidc_issuer_url=huge_idp.issuer,
        client_id=huge_idp.client_id,
        client_secret=huge_idp.client_secret,
        cookie_secure=True,
        reverse_proxy=True,
        pass_authorization_header=True,
    )
    server: TestServer = await aiohttp_server(build_app(settings))
    return server


class Browser:
    """Sends every cookie the proxy set, in one Cookie header, as a browser does."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.cookies: dict[str, str] = {}
        self.set_cookie: dict[str, str] = {}  # name -> the whole Set-Cookie value, attributes included

    def keep(self, resp: aiohttp.ClientResponse) -> None:
        for value in resp.headers.getall("Set-Cookie", ()):
            pair, _, attributes = value.partition(";")
            name, _, cookie = pair.strip().partition("=")
            if not cookie.strip('"') or "max-age=0" in attributes.lower().replace(" ", ""):
                self.cookies.pop(name, None)
                continue
            self.cookies[name] = cookie
            self.set_cookie[name] = value

    def header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    async def get(self, url: URL | str, **headers: str) -> aiohttp.ClientResponse:
        resp = await self.http.get(url, headers={**headers, **self.header()}, allow_redirects=False)
        self.keep(resp)
        return resp


@pytest.fixture
async def browser(tls: Tls) -> AsyncIterator[Browser]:
    connector = aiohttp.TCPConnector(ssl=tls.client)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as http:
        yield Browser(http)


@pytest.fixture
async def at_provider() -> AsyncIterator[aiohttp.ClientSession]:
    """The browser's side at the provider (its own cookies, small ones)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield http


def _claims(jwt: str) -> dict[str, Any]:
    body = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


async def test_session_over_30kb_through_nginx_sidecar(
    proxy: TestServer, nginx: Any, browser: Browser, at_provider: aiohttp.ClientSession
) -> None:
    edge = nginx(sidecar_server(proxy.port))
    base = URL(f"https://localhost:{edge.port}")

    first = await browser.get(base / "dash", **HTML)
    assert first.status == 302 and first.headers["Location"].startswith("/oauth2/sign_in?rd=")
    start = await browser.get(base.join(URL("/oauth2/start?rd=%2Fdash")))
    assert start.status == 302, await start.text()
    authorize = start.headers["Location"]
    assert URL(authorize).query["redirect_uri"] == f"https://localhost:{edge.port}/oauth2/callback"
    callback = await provider_login(at_provider, authorize, login="alice")
    done = await browser.get(callback, **HTML)
    assert done.status == 302, await done.text()
    assert done.headers["Location"] == "/dash"

    chunks = sorted((k for k in browser.cookies if k.startswith("_oidcproxy_")), key=lambda k: int(k[11:]))
    assert chunks == [f"_oidcproxy_{i}" for i in range(len(chunks))] and "_oidcproxy" not in browser.cookies
    sealed = sum(len(browser.cookies[k]) for k in chunks)
    assert sealed > 30_000 and len(chunks) >= 8, (sealed, len(chunks))
    assert all(len(browser.set_cookie[k]) < 4096 for k in chunks)  # what a browser keeps per cookie
    assert all("; secure" in browser.set_cookie[k].lower() for k in chunks)
    assert len(browser.header()["Cookie"]) > 30_000  # one line, past aiohttp's and NGINX's defaults

    page = await browser.get(base / "dash", **HTML)
    assert page.status == 200, await page.text()
    seen = (await page.json())["headers"]
    bearer = seen["Authorization"]
    assert len(_claims(bearer.removeprefix("Bearer "))["groups"]) >= GROUPS  # the whole token
    groups = seen["X-Forwarded-Groups"].split(",")
    assert len(groups) == 1 + len(GUIDS) + GROUPS
    assert {"admins", GUIDS[-1], f"group-{GROUPS:04d}"} <= set(groups)

    wss = URL(f"wss://localhost:{edge.port}/ws")
    async with browser.http.ws_connect(wss, headers=browser.header(), origin=str(base)) as ws:
        hello = (await ws.receive_json())["hello"]
        assert hello["Authorization"] == bearer
        assert hello["X-Forwarded-Groups"] == seen["X-Forwarded-Groups"]
        await ws.send_str("big")
        assert await ws.receive_str() == "echo:big"
    assert "too big header" not in edge.error_log()
