"""Signing in while the provider cannot be reached: 503 with Retry-After and the error page (JSON for API
clients); a provider that answered, but wrongly, stays a 502. Against the embedded development provider
served on its own port (so the test can stop it), an address that refuses connections, and a raw server
that accepts and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from oidcproxy.idp import DevIdP, IdPClient, IdPConfig, build_app
from oidcproxy.web.app import build_app as build_proxy
from tests.factories import make_settings
from tests.support.devidp import dev_login

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


@dataclass
class Setup:
    proxy: TestServer
    idp: DevIdP
    idp_server: TestServer


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def proxy_for(aiohttp_server: Any, port: int, issuer: str, **overrides: Any) -> TestServer:
    settings = make_settings(
        oidc_issuer_url=issuer, client_id="proxy", client_secret="proxy-secret-value", **overrides
    )
    server: TestServer = await aiohttp_server(build_proxy(settings), port=port)
    return server


@pytest.fixture
async def setup(aiohttp_server: Any, unused_tcp_port_factory: Any) -> Setup:
    idp_port, proxy_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    issuer = f"http://127.0.0.1:{idp_port}"
    client = IdPClient(
        client_id="proxy",
        client_secret="proxy-secret-value",
        redirect_uris=(f"http://127.0.0.1:{proxy_port}/oauth2/callback",),
    )
    app, idp = build_app(IdPConfig(issuer=issuer, clients=(client,)))
    idp_server = await aiohttp_server(app, port=idp_port)
    return Setup(await proxy_for(aiohttp_server, proxy_port, issuer), idp, idp_server)


async def at_callback(setup: Setup, browser: aiohttp.ClientSession) -> str:
    """Start signing in and sign in at the provider; answers the callback URL, not yet visited."""
    start = await browser.get(setup.proxy.make_url("/oauth2/start"), allow_redirects=False)
    assert start.status == 302, await start.text()
    return await dev_login(browser, start.headers["Location"], email="alice@example.com")


def assert_unreachable_page(resp: aiohttp.ClientResponse, text: str) -> None:
    assert resp.status == 503, text
    assert resp.headers["Retry-After"] == "10"
    assert "Identity provider unavailable" in text and "could not be reached" in text
    assert "Location" not in resp.headers  # an error page, not a sign-in loop


async def test_login_while_the_provider_refuses_connections(
    aiohttp_server: Any, unused_tcp_port_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    nobody = unused_tcp_port_factory()  # nothing listens there: connection refused
    proxy = await proxy_for(aiohttp_server, unused_tcp_port_factory(), f"http://127.0.0.1:{nobody}")
    async with aiohttp.ClientSession() as http:
        page = await http.get(proxy.make_url("/oauth2/start"), headers=HTML, allow_redirects=False)
        assert_unreachable_page(page, await page.text())
        api = await http.get(proxy.make_url("/oauth2/start"), headers=JSON, allow_redirects=False)
        assert api.status == 503 and api.headers["Retry-After"] == "10"
        body = await api.json()
        assert body["status"] == 503 and body["error"] == "IdPUnreachable"
    assert "503 IdPUnreachable: discovery" in caplog.text and "Traceback" not in caplog.text


async def test_login_while_the_provider_accepts_but_never_answers(
    aiohttp_server: Any, unused_tcp_port_factory: Any
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the proxy gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    issuer = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        proxy = await proxy_for(aiohttp_server, unused_tcp_port_factory(), issuer, provider_timeout="0.2s")
        async with aiohttp.ClientSession() as http:
            page = await http.get(proxy.make_url("/oauth2/start"), headers=HTML, allow_redirects=False)
            assert_unreachable_page(page, await page.text())
    finally:
        server.close()


async def test_provider_gone_before_the_callback_gives_503(
    setup: Setup, browser: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    callback = await at_callback(setup, browser)
    await setup.idp_server.close()  # the token endpoint now refuses connections
    resp = await browser.get(callback, headers=HTML, allow_redirects=False)
    assert_unreachable_page(resp, await resp.text())
    assert "503 IdPUnreachable: token endpoint" in caplog.text


async def test_provider_answering_wrongly_at_the_callback_stays_502(
    setup: Setup, browser: aiohttp.ClientSession
) -> None:
    callback = await at_callback(setup, browser)
    setup.idp.fail_token_endpoint = True  # it answers, with a 503 of its own
    resp = await browser.get(callback, headers=JSON, allow_redirects=False)
    assert resp.status == 502
    assert "Retry-After" not in resp.headers
    assert (await resp.json())["error"] == "IdPUnavailable"
