"""Back-channel logout (OIDC Back-Channel Logout 1.0) through the real proxy: a logout at the provider
ends the proxy session, refuses the old cookie and closes its WebSocket (1008 to the browser, 1001 to
the upstream); forged, replayed and malformed logout tokens get 400 and end nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import RSAKey

from oidcproxy.idp import DevIdP
from oidcproxy.model import system_clock
from oidcproxy.web.app import build_app
from oidcproxy.web.appkeys import EMBEDDED_IDP
from tests.conftest import USERS, Provider
from tests.factories import make_settings, walk_login
from tests.support.nginx import CLOSED, big_header_upstream
from tests.support.nodeidp import DEFAULT_CLIENT, provider_logout, start_node_idp

LOGOUT = "/oauth2/backchannel-logout"


@dataclass
class Setup:
    proxy: TestServer
    provider: Provider
    logout_at_provider: Callable[[aiohttp.ClientSession], Awaitable[None]]


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(big_header_upstream())
    return server


@pytest.fixture(params=["node", "embedded"])
async def setup(
    request: pytest.FixtureRequest, aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any
) -> AsyncIterator[Setup]:
    """The proxy, registered at the provider with its back-channel logout URL."""
    port = unused_tcp_port_factory()
    values: dict[str, Any] = {"upstream": [str(upstream.make_url("/"))], "websocket_session_check": "100ms"}
    if request.param == "embedded":
        values.update(oidc_type="embedded", http_address=f"127.0.0.1:{port}")
        proxy: TestServer = await aiohttp_server(build_app(make_settings(**values)), port=port)
        idp = proxy.app[EMBEDDED_IDP]

        async def admin_logout(_: aiohttp.ClientSession) -> None:
            (session,) = idp.store.sessions.values()
            assert await idp.backchannel_logout(sid=session.sid) == {"oidcproxy": 200}

        yield Setup(proxy, Provider("embedded", None), admin_logout)
        return
    client = {**DEFAULT_CLIENT, "backchannel_logout_uri": f"http://127.0.0.1:{port}{LOGOUT}"}
    with start_node_idp(users=USERS, clients=[client], allow_loopback_requests=True) as node:
        values.update(oidc_issuer_url=node.issuer, client_id=node.client_id, client_secret=node.client_secret)
        proxy = await aiohttp_server(build_app(make_settings(**values)), port=port)

        async def person_logs_out_at_provider(browser: aiohttp.ClientSession) -> None:
            async with browser.get(node.discovery_url) as resp:
                end_session = (await resp.json())["end_session_endpoint"]
            await provider_logout(browser, end_session)  # no id_token_hint: the provider's own page

        yield Setup(proxy, Provider("node", node), person_logs_out_at_provider)


async def _sign_in(setup: Setup, browser: aiohttp.ClientSession) -> dict[str, str]:
    final = await walk_login(browser, setup.proxy.make_url("/"), "/", setup.provider.login, login="alice")
    assert final.status == 200
    return {c.key: c.value for c in browser.cookie_jar if c.key.startswith("_oidcproxy")}


async def _status_with(proxy: TestServer, cookies: dict[str, str]) -> int:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        other.cookie_jar.update_cookies(cookies, proxy.make_url("/"))
        return (await other.get(proxy.make_url("/oauth2/userinfo"))).status


async def test_logout_at_the_provider_ends_the_session_and_closes_its_websocket(
    setup: Setup, upstream: TestServer, browser: aiohttp.ClientSession
) -> None:
    proxy = setup.proxy
    cookies = await _sign_in(setup, browser)
    async with browser.ws_connect(proxy.make_url("/ws")) as ws:
        await ws.receive_json()
        await ws.send_str("before")
        assert await ws.receive_str() == "echo:before"
        await setup.logout_at_provider(browser)
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert (closing.type, closing.data, closing.extra) == (
            aiohttp.WSMsgType.CLOSE,
            1008,
            "session revoked",
        )
    assert await asyncio.wait_for(upstream.app[CLOSED].get(), 10) == 1001
    assert await _status_with(proxy, cookies) == 401
    assert (await browser.get(proxy.make_url("/oauth2/auth"))).status == 401


@pytest.fixture
async def embedded(aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any) -> TestServer:
    port = unused_tcp_port_factory()
    settings = make_settings(
        upstream=[str(upstream.make_url("/"))], oidc_type="embedded", http_address=f"127.0.0.1:{port}"
    )
    server: TestServer = await aiohttp_server(build_app(settings), port=port)
    return server


async def _post(proxy: TestServer, token: str | None) -> aiohttp.ClientResponse:
    data = {} if token is None else {"logout_token": token}
    async with aiohttp.ClientSession() as http:
        resp = await http.post(proxy.make_url(LOGOUT), data=data)
        await resp.read()
        return resp


def _foreign_key_token(idp: DevIdP, sid: str) -> str:
    """The same claims and kid as a real logout token, signed with a key the provider never had."""
    key = RSAKey.generate_key(2048, private=True)
    now = int(system_clock())
    claims = {
        "iss": idp.config.issuer,
        "aud": "oidcproxy",
        "iat": now,
        "exp": now + 120,
        "jti": "forged-1",
        "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    }
    return jwt.encode({"alg": "RS256", "kid": idp.keys.current.kid}, claims, key)


FORGERIES: dict[str, Callable[[DevIdP, str], str]] = {
    "foreign key": _foreign_key_token,
    "another audience": lambda idp, sid: idp.logout_token("someone-else", sid=sid),
    "another issuer": lambda idp, sid: idp.logout_token("oidcproxy", sid=sid, iss="https://evil.example"),
    "nonce present": lambda idp, sid: idp.logout_token("oidcproxy", sid=sid, nonce="n"),
    "no logout event": lambda idp, sid: idp.logout_token("oidcproxy", sid=sid, events={"x": {}}),
    "issued an hour ago": lambda idp, sid: idp.logout_token(
        "oidcproxy", sid=sid, iat=int(system_clock()) - 3600, exp=int(system_clock()) + 60
    ),
    "neither sid nor sub": lambda idp, sid: idp.logout_token("oidcproxy"),
    "no jti": lambda idp, sid: idp.logout_token("oidcproxy", sid=sid, jti=None),
    "not a JWT": lambda idp, sid: "garbage",
    "unsigned": lambda idp, sid: "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0.",
}


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_forged_logout_tokens_are_refused_and_end_nothing(
    embedded: TestServer, browser: aiohttp.ClientSession, forgery: str
) -> None:
    idp = embedded.app[EMBEDDED_IDP]
    cookies = await _sign_in(Setup(embedded, Provider("embedded", None), _never), browser)
    (session,) = idp.store.sessions.values()
    refused = await _post(embedded, FORGERIES[forgery](idp, session.sid))
    assert refused.status == 400
    assert refused.content_type == "application/json"
    assert await _status_with(embedded, cookies) == 200


async def test_a_replayed_logout_token_is_refused(
    embedded: TestServer, browser: aiohttp.ClientSession
) -> None:
    idp = embedded.app[EMBEDDED_IDP]
    await _sign_in(Setup(embedded, Provider("embedded", None), _never), browser)
    token = idp.logout_token("oidcproxy", sub="someone-else")
    assert (await _post(embedded, token)).status == 200
    assert (await _post(embedded, token)).status == 400


async def test_a_logout_token_for_the_sub_ends_every_session_of_that_person(
    embedded: TestServer, browser: aiohttp.ClientSession
) -> None:
    idp = embedded.app[EMBEDDED_IDP]
    first = await _sign_in(Setup(embedded, Provider("embedded", None), _never), browser)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as laptop:
        second = await _sign_in(Setup(embedded, Provider("embedded", None), _never), laptop)
    assert first != second
    (person,) = {s.user.subject for s in idp.store.sessions.values()}
    assert await idp.backchannel_logout(sub=person) == {"oidcproxy": 200}
    assert await _status_with(embedded, first) == 401
    assert await _status_with(embedded, second) == 401


async def test_no_logout_token_is_a_400(embedded: TestServer) -> None:
    refused = await _post(embedded, None)
    assert refused.status == 400


async def _never(_: aiohttp.ClientSession) -> None:
    raise AssertionError("not used")
