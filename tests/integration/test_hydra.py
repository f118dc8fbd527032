"""The proxy against a real Ory Hydra v2.3 (built from its Go module) and a login app of ours.

One Hydra serves the whole test session; each test registers its own client with the proxy's exact
callback URL (Hydra matches redirect URIs exactly, port included). Hydra's habits under test:
opaque access tokens, a separate login and consent app, refresh tokens only with `offline_access` and
rotated on every use (reuse revokes the whole chain). Hydra v2.3.0 sends no RFC 9207 `iss` with the code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web.app import build_app
from tests.factories import make_settings, walk_login
from tests.support.hydra import Hydra, hydra_login, hydra_missing, start_hydra

_MISSING = hydra_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")

JSON = {"Accept": "application/json"}
USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "email": "alice@example.com",
        "email_verified": True,
        "preferred_username": "alice",
        "groups": ["admins", "dev"],
    },
    "bob": {"email": "bob@example.com", "email_verified": True, "preferred_username": "bob", "groups": []},
    "crowd": {
        "email": "crowd@example.com",
        "email_verified": True,
        "groups": [f"/teams/team-{i:03d}" for i in range(300)],
    },
}


@pytest.fixture(scope="session")
def hydra() -> Iterator[Hydra]:
    with start_hydra(users=USERS) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture
def make_proxy(
    aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any, hydra: Hydra
) -> Callable[..., Any]:
    """A proxy with its own client at Hydra, registered for its exact callback URL."""

    async def make(clock: Any = system_clock, **overrides: Any) -> TestServer:
        port = unused_tcp_port_factory()
        client = hydra.create_client({"redirect_uris": [f"http://127.0.0.1:{port}/oauth2/callback"]})
        values: dict[str, Any] = {
            "upstream": [str(upstream.make_url("/"))],
            "oidc_issuer_url": hydra.issuer,
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "scope": "openid email profile offline_access",
            **overrides,
        }
        server: TestServer = await aiohttp_server(build_app(make_settings(**values), clock), port=port)
        return server

    return make


async def sign_in(browser: aiohttp.ClientSession, proxy: TestServer, login: str) -> aiohttp.ClientResponse:
    return await walk_login(browser, proxy.make_url("/"), "/who", hydra_login, login=login)


async def headers_of(resp: aiohttp.ClientResponse) -> dict[str, str]:
    assert resp.status == 200, await resp.text()
    seen: dict[str, str] = (await resp.json())["headers"]
    return seen


async def test_login_through_hydras_login_app_with_opaque_access_token(make_proxy: Any, browser: Any) -> None:
    proxy = await make_proxy(pass_access_token=True, allowed_group=["admins"])
    headers = await headers_of(await sign_in(browser, proxy, "alice"))
    assert headers["X-Forwarded-Email"] == "alice@example.com"
    assert headers["X-Forwarded-Groups"] == "admins,dev"
    access = headers["X-Forwarded-Access-Token"]
    assert access.startswith("ory_at_")  # opaque: passed as it is
    browser.cookie_jar.clear()
    assert (await sign_in(browser, proxy, "bob")).status == 403


async def test_large_session_of_several_hundred_groups(make_proxy: Any, browser: Any) -> None:
    proxy = await make_proxy()
    headers = await headers_of(await sign_in(browser, proxy, "crowd"))
    assert len(headers["X-Forwarded-Groups"].split(",")) == 300
    again = await browser.get(proxy.make_url("/again"))
    assert (await headers_of(again))["X-Forwarded-Email"] == "crowd@example.com"


async def test_id_token_of_another_client_as_bearer(make_proxy: Any, hydra: Hydra) -> None:
    cli = hydra.create_client({"client_id": "kubectl", "redirect_uris": ["http://127.0.0.1:9/cb"]})
    id_token = await code_flow_id_token(hydra, cli, "alice")
    assert jwt.decode(id_token, options={"verify_signature": False})["aud"] == ["kubectl"]
    strict = await make_proxy(skip_jwt_bearer_tokens=True)
    assert (await call(strict, id_token))[0] == 401
    accepting = await make_proxy(skip_jwt_bearer_tokens=True, oidc_extra_audience=["kubectl"])
    status, seen = await call(accepting, id_token)
    assert status == 200 and seen["headers"]["X-Forwarded-Email"] == "alice@example.com"


async def test_concurrent_requests_survive_rotation_round_after_round(make_proxy: Any, browser: Any) -> None:
    clock = FakeClock(system_clock())
    proxy = await make_proxy(clock, cookie_refresh="1m")
    await headers_of(await sign_in(browser, proxy, "alice"))
    for _ in range(3):  # each round needs the refresh token Hydra rotated in the round before
        clock.advance(61)
        replies = await asyncio.gather(
            *(browser.get(proxy.make_url(f"/r{i}"), headers=JSON) for i in range(6))
        )
        assert [r.status for r in replies] == [200] * 6
        assert any(k.startswith("_oidcproxy") for r in replies for k in r.cookies)


async def call(proxy: TestServer, token: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as cli:
        headers = {**JSON, "Authorization": f"Bearer {token}"}
        async with cli.get(proxy.make_url("/api"), headers=headers) as resp:
            return resp.status, await resp.json()


async def code_flow_id_token(hydra: Hydra, client: dict[str, Any], login: str) -> str:
    """An ID token Hydra issued to another client (a CLI), through the same login app."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        meta = await (await s.get(hydra.discovery_url)).json()
        redirect = client["redirect_uris"][0]
        query = {
            "client_id": client["client_id"],
            "response_type": "code",
            "scope": "openid email profile",
            "redirect_uri": redirect,
            "state": "state-of-the-cli",
            "nonce": "nonce-of-the-cli",
        }
        back = await hydra_login(s, str(URL(meta["authorization_endpoint"]).with_query(query)), login=login)
        form = {"grant_type": "authorization_code", "code": URL(back).query["code"], "redirect_uri": redirect}
        auth = {"Authorization": aiohttp.encode_basic_auth(client["client_id"], client["client_secret"])}
        async with s.post(meta["token_endpoint"], data=form, headers=auth) as resp:
            reply = await resp.json()
            assert resp.status == 200, reply
            return str(reply["id_token"])
