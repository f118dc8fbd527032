"""The proxy against a real Keycloak 26 (Quarkus distribution, realm tests/keycloak/realm.json).

One Keycloak serves the whole test session (it takes about a minute to boot on two cores). Each test
starts its own proxy with the options it tests and signs in on Keycloak's real login page. Keycloak's
habits under test: the issuer under /realms/NAME, realm roles nested in `realm_access.roles`, group
paths with slashes, tokens for other clients at the same issuer, large tokens, and refresh tokens
rotated with "Revoke Refresh Token" (a refresh token works once).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer

from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web.app import build_app
from tests.factories import make_settings, walk_login
from tests.support.keycloak import Keycloak, keycloak_login, keycloak_missing, start_keycloak

_MISSING = keycloak_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")

CROWD = 300  # groups of the user `crowd`
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="session")
def keycloak() -> Iterator[Keycloak]:
    with start_keycloak(crowd_groups=CROWD) as kc:
        yield kc


@pytest.fixture
async def browser(keycloak: Keycloak) -> AsyncIterator[aiohttp.ClientSession]:
    """A browser's cookie jar: Keycloak's cookies are `Secure`, and browsers send them to loopback."""
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[keycloak.base_url])
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        yield session


@pytest.fixture
def make_proxy(
    aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any, keycloak: Keycloak
) -> Any:
    async def make(clock: Any = system_clock, **overrides: Any) -> TestServer:
        values: dict[str, Any] = {
            "upstream": [str(upstream.make_url("/"))],
            "oidc_issuer_url": keycloak.issuer,
            "client_id": keycloak.client_id,
            "client_secret": keycloak.client_secret,
            **overrides,
        }
        port = unused_tcp_port_factory()
        server: TestServer = await aiohttp_server(build_app(make_settings(**values), clock), port=port)
        return server

    return make


async def sign_in(browser: aiohttp.ClientSession, proxy: TestServer, login: str) -> aiohttp.ClientResponse:
    return await walk_login(browser, proxy.make_url("/"), "/who", keycloak_login, login=login)


async def headers_of(resp: aiohttp.ClientResponse) -> dict[str, str]:
    assert resp.status == 200, await resp.text()
    seen: dict[str, str] = (await resp.json())["headers"]
    return seen


async def test_login_on_keycloaks_page_with_group_paths(make_proxy: Any, browser: Any) -> None:
    proxy = await make_proxy(oidc_username_claim="preferred_username", oidc_username_prefix_policy="NoPrefix")
    headers = await headers_of(await sign_in(browser, proxy, "alice"))
    assert headers["X-Forwarded-Email"] == "alice@example.com"
    assert headers["X-Forwarded-User"] == "alice"
    assert headers["X-Forwarded-Groups"] == "/admins,/engineering/platform"
    again = await browser.get(proxy.make_url("/next"), headers=JSON)
    assert again.status == 200


async def test_realm_roles_from_userinfo_decide_access_and_survive_refresh(
    make_proxy: Any, browser: Any
) -> None:
    # Keycloak puts realm_access in the access token only; the realm's mapper adds it to userinfo
    # (not to the ID token), so the proxy asks userinfo at login and again after each refresh.
    clock = FakeClock(system_clock())
    proxy = await make_proxy(
        clock, oidc_groups_claim="realm_access.roles", allowed_group=["dashboard-user"], cookie_refresh="1m"
    )
    headers = await headers_of(await sign_in(browser, proxy, "alice"))
    roles = headers["X-Forwarded-Groups"].split(",")
    assert {"dashboard-user", "viewer", "default-roles-acme"} <= set(roles)
    clock.advance(61)
    refreshed = await browser.get(proxy.make_url("/after-refresh"), headers=JSON)
    assert any(k.startswith("_oidcproxy") for k in refreshed.cookies)
    assert (await headers_of(refreshed))["X-Forwarded-Groups"].split(",") == roles
    browser.cookie_jar.clear()
    refused = await sign_in(browser, proxy, "bob")
    assert refused.status == 403
    assert "Access denied" in await refused.text()


async def test_allowed_group_by_full_path(make_proxy: Any, browser: Any) -> None:
    proxy = await make_proxy(allowed_group=["kc:/engineering/platform"], oidc_groups_prefix="kc:")
    headers = await headers_of(await sign_in(browser, proxy, "alice"))
    assert headers["X-Forwarded-Groups"] == "kc:/admins,kc:/engineering/platform"
    browser.cookie_jar.clear()
    assert (await sign_in(browser, proxy, "bob")).status == 403  # /engineering/web


async def test_large_session_of_several_hundred_groups(make_proxy: Any, browser: Any) -> None:
    proxy = await make_proxy()
    headers = await headers_of(await sign_in(browser, proxy, "crowd"))
    groups = headers["X-Forwarded-Groups"].split(",")
    assert len(groups) == CROWD
    assert groups[0] == "/teams/team-000"
    for path in ("/a", "/b"):  # the chunked cookie keeps working on the following requests
        assert (await headers_of(await browser.get(proxy.make_url(path))))["X-Forwarded-Email"] == (
            "crowd@example.com"
        )


# --- bearer tokens of another client at the same issuer --------------------------------------------


async def call(proxy: TestServer, token: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as cli:
        headers = {**JSON, "Authorization": f"Bearer {token}"}
        async with cli.get(proxy.make_url("/api"), headers=headers) as resp:
            return resp.status, await resp.json()


async def test_cli_id_token_accepted_with_extra_audience(make_proxy: Any, keycloak: Keycloak) -> None:
    id_token = keycloak.password_grant("kubectl", "alice")["id_token"]
    assert jwt.decode(id_token, options={"verify_signature": False})["aud"] == "kubectl"
    strict = await make_proxy(skip_jwt_bearer_tokens=True)
    assert (await call(strict, id_token))[0] == 401
    accepting = await make_proxy(skip_jwt_bearer_tokens=True, oidc_extra_audience=["kubectl"])
    status, seen = await call(accepting, id_token)
    assert status == 200
    assert seen["headers"]["X-Forwarded-Email"] == "alice@example.com"
    assert seen["headers"]["X-Forwarded-Groups"] == "/admins,/engineering/platform"


async def test_cli_access_token_with_audience_mapper_accepted(make_proxy: Any, keycloak: Keycloak) -> None:
    access = keycloak.password_grant("kubectl", "alice")["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["azp"] == "kubectl" and "oidcproxy" in claims["aud"]  # the audience mapper
    proxy = await make_proxy(skip_jwt_bearer_tokens=True, allowed_group=["/admins"])
    status, seen = await call(proxy, access)
    assert status == 200
    assert seen["headers"]["X-Forwarded-Email"] == "alice@example.com"


# --- refresh tokens rotated, each usable once -------------------------------------------------------


async def test_keycloak_refuses_a_reused_refresh_token(keycloak: Keycloak) -> None:
    first = keycloak.password_grant("kubectl", "bob")["refresh_token"]
    status, _ = keycloak.refresh(first, client_id="kubectl")
    assert status == 200
    status, reply = keycloak.refresh(first, client_id="kubectl")
    assert status == 400 and reply["error"] == "invalid_grant"


async def test_concurrent_requests_survive_rotation_round_after_round(make_proxy: Any, browser: Any) -> None:
    clock = FakeClock(system_clock())
    proxy = await make_proxy(clock, cookie_refresh="1m")
    await headers_of(await sign_in(browser, proxy, "alice"))
    for _ in range(3):  # each round needs the refresh token Keycloak rotated in the round before
        clock.advance(61)
        replies = await asyncio.gather(
            *(browser.get(proxy.make_url(f"/r{i}"), headers=JSON) for i in range(6))
        )
        assert [r.status for r in replies] == [200] * 6
        assert any(k.startswith("_oidcproxy") for r in replies for k in r.cookies)
