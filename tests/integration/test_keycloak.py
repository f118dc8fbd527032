"""The proxy against a real Keycloak 26 (Quarkus distribution, realm tests/keycloak/realm.json).

One Keycloak serves the whole test session (it takes about a minute to boot on two cores). Each test
starts its own proxy with the options it tests and signs in on Keycloak's real login page. Keycloak's
habits under test: the issuer under /realms/NAME, realm roles nested in `realm_access.roles`, group
paths with slashes, tokens for other clients at the same issuer, large tokens, refresh tokens
rotated with "Revoke Refresh Token" (a refresh token works once), also across `--workers 2`, and
signing out: RP-initiated logout at its end_session_endpoint, revocation at its revocation endpoint,
and back-channel logout tokens (with `sid`) when an admin ends the person's sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web.app import build_app
from oidcproxy.web.appkeys import SIGN_OUT
from tests.factories import make_settings, walk_login
from tests.support.keycloak import (
    REALM,
    Keycloak,
    keycloak_login,
    keycloak_missing,
    start_keycloak,
)
from tests.support.nginx import big_header_upstream
from tests.support.oidcflow import IdPTap
from tests.support.signout import (
    HTML,
    login_page,
    redeem_refresh_token,
    replayed,
    session_of,
    websocket_closed_by,
)
from tests.support.workers import (
    PARALLEL,
    burst,
    cookies_set,
    deletes_session,
    refreshed,
    session_cookies,
    start_workers,
)

_MISSING = keycloak_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")

CROWD = 300  # groups of the user `crowd`
REFRESH_S = 2  # --cookie-refresh of the two-worker proxy, in real time
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


async def test_login_on_keycloaks_page_with_group_paths(
    make_proxy: Any, browser: Any, keycloak: Keycloak
) -> None:
    proxy = await make_proxy(oidc_username_claim="preferred_username", oidc_username_prefix_policy="NoPrefix")
    callbacks: list[URL] = []

    async def login_seen(session: aiohttp.ClientSession, url: str, *, login: str) -> str:
        callbacks.append(URL(await keycloak_login(session, url, login=login)))
        return str(callbacks[-1])

    headers = await headers_of(
        await walk_login(browser, proxy.make_url("/"), "/who", login_seen, login="alice")
    )
    # Keycloak's callback carries RFC 9207 `iss` and its `session_state`, beside code and state.
    assert callbacks[0].query["iss"] == keycloak.issuer
    assert "session_state" in callbacks[0].query
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


async def test_cli_id_token_accepted_through_extra_jwt_issuers_at_our_issuer(
    make_proxy: Any, keycloak: Keycloak
) -> None:
    """oauth2-proxy's way: `--extra-jwt-issuers <our issuer>=kubectl` adds kubectl as an audience."""
    proxy = await make_proxy(skip_jwt_bearer_tokens=True, extra_jwt_issuers=[f"{keycloak.issuer}=kubectl"])
    status, seen = await call(proxy, keycloak.password_grant("kubectl", "alice")["id_token"])
    assert status == 200
    assert seen["headers"]["X-Forwarded-Email"] == "alice@example.com"
    assert seen["headers"]["X-Forwarded-Groups"] == "/admins,/engineering/platform"
    # admin-cli, a public client Keycloak creates in every realm, is not listed: its tokens are refused.
    other = keycloak.password_grant("admin-cli", "alice")["id_token"]
    assert jwt.decode(other, options={"verify_signature": False})["aud"] == "admin-cli"
    status, body = await call(proxy, other)
    assert status == 401 and body["error"] == "NotAuthenticated"


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


@pytest.fixture
async def tap(keycloak: Keycloak, aiohttp_server: Any) -> IdPTap:
    """Counts the grants Keycloak's token endpoint sees."""
    return await IdPTap(keycloak.base_url).start(aiohttp_server)


@pytest.fixture
def two_workers(keycloak: Keycloak, tap: IdPTap, upstream: TestServer, unused_tcp_port: int) -> Iterator[URL]:
    """`oidcproxy --workers 2` whose token endpoint is the tap's, refreshing sessions older than REFRESH_S."""
    oidc = f"{keycloak.issuer}/protocol/openid-connect"
    args = [
        "--upstream", str(upstream.make_url("/")), "--oidc-issuer-url", keycloak.issuer,
        "--client-id", keycloak.client_id, "--client-secret", keycloak.client_secret,
        "--skip-oidc-discovery", "--login-url", f"{oidc}/auth", "--oidc-jwks-url", f"{oidc}/certs",
        "--redeem-url", tap.url(urlsplit(keycloak.token_url).path),
        "--email-domain", "example.com", "--cookie-refresh", f"{REFRESH_S}s",
    ]  # fmt: skip
    with start_workers(args, address=f"127.0.0.1:{unused_tcp_port}") as base:
        yield base


async def test_two_workers_share_one_rotation_and_nobody_is_signed_out(
    two_workers: URL, tap: IdPTap, browser: aiohttp.ClientSession
) -> None:
    loop = asyncio.get_running_loop()
    final = await walk_login(browser, two_workers, "/who", keycloak_login, login="alice")
    assert final.status == 200, await final.text()
    signed_in, old = loop.time(), session_cookies(browser.cookie_jar)
    await asyncio.sleep(max(0.0, signed_in + REFRESH_S + 0.3 - loop.time()))
    during = await burst(two_workers, old, "during")  # the refresh happens while these are in flight
    after = await burst(two_workers, old, "after")  # the old cookie, right after the refresh
    for reply in during + after:
        assert reply.status == 200
        assert not deletes_session(reply)
        assert refreshed(reply)
    assert tap.grants["refresh_token"] == 1
    # The rotated token works at the next refresh: had a worker replayed the old one, Keycloak would
    # have revoked it ("Revoke Refresh Token") and this round would fail.
    new = cookies_set(after[0])
    await asyncio.sleep(REFRESH_S + 0.3)
    again = await burst(two_workers, new, "again")
    assert [r.status for r in again] == [200] * PARALLEL
    assert not any(deletes_session(r) for r in again)
    assert tap.grants["refresh_token"] == 2


# --- signing out: RP-initiated logout, revocation, back-channel logout

BACKCHANNEL = "/oauth2/backchannel-logout"


@pytest.fixture
def client_settings(keycloak: Keycloak) -> Iterator[Callable[..., None]]:
    """Set attributes of the proxy's client in the realm (as an admin would in its settings) for one
    test; the realm's own values come back after it."""
    (client,) = keycloak.admin("GET", f"/realms/{REALM}/clients?clientId={keycloak.client_id}")
    path, original = f"/realms/{REALM}/clients/{client['id']}", dict(client["attributes"])

    def change(**attributes: str) -> None:
        keycloak.admin("PUT", path, {**client, "attributes": {**original, **attributes}})

    yield change
    keycloak.admin("PUT", path, {**client, "attributes": original})


@pytest.fixture
def registered_for_logout(client_settings: Callable[..., None]) -> Callable[[TestServer], None]:
    """Registers a proxy's sign-out URLs at Keycloak: "Valid post logout redirect URIs" and
    "Backchannel logout URL" (with "Backchannel logout session required": logout tokens carry sid)."""

    def register(proxy: TestServer) -> None:
        client_settings(
            **{
                "post.logout.redirect.uris": str(proxy.make_url("/oauth2/signed_out")),
                "backchannel.logout.url": str(proxy.make_url(BACKCHANNEL)),
                "backchannel.logout.session.required": "true",
            }
        )

    return register


async def test_sign_out_logs_out_at_keycloak_so_the_next_login_asks_again(
    make_proxy: Any, browser: Any, keycloak: Keycloak, registered_for_logout: Any
) -> None:
    proxy = await make_proxy()
    registered_for_logout(proxy)
    await headers_of(await sign_in(browser, proxy, "alice"))
    # Control: while Keycloak's session lasts, a new login comes straight back without its form.
    where, _ = await login_page(proxy, browser)
    assert where.path == "/" and where.port == proxy.port
    stolen, id_token = session_cookies(browser.cookie_jar), session_of(browser).tokens.id_token
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), headers=HTML, allow_redirects=False)
    assert out.status == 302
    to = URL(out.headers["Location"])
    assert str(to.with_query(None)) == f"{keycloak.issuer}/protocol/openid-connect/logout"
    assert to.query["id_token_hint"] == id_token
    assert to.query["client_id"] == keycloak.client_id
    assert to.query["post_logout_redirect_uri"] == str(proxy.make_url("/oauth2/signed_out"))
    # With the ID token as hint, Keycloak ends its session at once (no "Do you want to log out?" page)
    # and sends the browser back with our state.
    at_keycloak = await browser.get(to, headers=HTML, allow_redirects=False)
    assert at_keycloak.status == 302, await at_keycloak.text()
    back = URL(at_keycloak.headers["Location"])
    assert back.with_query(None) == proxy.make_url("/oauth2/signed_out")
    assert back.query["state"] == to.query["state"]
    done = await browser.get(back, headers=HTML, allow_redirects=False)
    assert done.status == 200
    assert "You are signed out at" in await done.text()
    where, body = await login_page(proxy, browser)
    assert where.port == URL(keycloak.base_url).port  # Keycloak asks again: no silent login
    assert 'name="username"' in body and 'name="password"' in body
    assert await replayed(proxy, stolen) == 401


async def test_sign_out_of_a_large_session_needs_no_hint_at_keycloak(
    make_proxy: Any, browser: Any, keycloak: Keycloak, registered_for_logout: Any
) -> None:
    # The crowd's ID token (several hundred group paths) is too long for a URL: the proxy leaves the
    # hint out. Keycloak would then ask "Do you want to log out?", but the proxy's revocation of the
    # refresh token has already ended Keycloak's session, so it sends the browser straight back.
    proxy = await make_proxy()
    registered_for_logout(proxy)
    await headers_of(await sign_in(browser, proxy, "crowd"))
    assert len(session_of(browser).tokens.id_token) > 4096
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), headers=HTML, allow_redirects=False)
    assert out.status == 302
    to = URL(out.headers["Location"])
    assert "id_token_hint" not in to.query and to.query["client_id"] == keycloak.client_id
    await proxy.app[SIGN_OUT].idle()  # the revocation, server to server, before the browser arrives
    at_keycloak = await browser.get(to, headers=HTML, allow_redirects=False)
    assert at_keycloak.status == 302, await at_keycloak.text()
    back = URL(at_keycloak.headers["Location"])
    assert back.with_query(None) == proxy.make_url("/oauth2/signed_out")
    done = await browser.get(back, headers=HTML, allow_redirects=False)
    assert done.status == 200
    assert "You are signed out at" in await done.text()
    where, body = await login_page(proxy, browser)
    assert where.port == URL(keycloak.base_url).port and 'name="password"' in body


async def test_sign_out_revokes_the_refresh_token_at_keycloak(
    make_proxy: Any, browser: Any, keycloak: Keycloak, registered_for_logout: Any
) -> None:
    proxy = await make_proxy()
    registered_for_logout(proxy)
    await headers_of(await sign_in(browser, proxy, "alice"))
    refresh_token = session_of(browser).tokens.refresh_token
    assert refresh_token
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), headers=HTML, allow_redirects=False)
    assert out.status == 302
    await proxy.app[SIGN_OUT].idle()  # the revocation runs in the background
    # The browser never went on to Keycloak's end_session_endpoint: only the proxy's revocation
    # (RFC 7009, at Keycloak's revocation endpoint) can have made the refresh token worthless.
    redeemed = await redeem_refresh_token(
        keycloak.token_url, refresh_token, keycloak.client_id, keycloak.client_secret
    )
    assert redeemed == (400, "invalid_grant")
    # Keycloak ends its own session with it: the next login asks for the password again.
    where, body = await login_page(proxy, browser)
    assert where.port == URL(keycloak.base_url).port and 'name="password"' in body


@pytest.fixture
async def ws_upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(big_header_upstream())
    return server


async def test_admin_ending_the_session_at_keycloak_ends_the_proxy_session_and_its_websocket(
    make_proxy: Any,
    browser: Any,
    keycloak: Keycloak,
    registered_for_logout: Any,
    ws_upstream: TestServer,
) -> None:
    proxy = await make_proxy(upstream=[str(ws_upstream.make_url("/"))], websocket_session_check="100ms")
    registered_for_logout(proxy)
    assert (await sign_in(browser, proxy, "alice")).status == 200
    stolen, sid = session_cookies(browser.cookie_jar), session_of(browser).sid
    assert not sid.startswith("oidcproxy:")  # Keycloak's session id, from the ID token

    async def admin_signs_the_session_out() -> None:
        # The admin console's Users -> alice -> Sessions -> Sign out: Keycloak posts a logout token
        # (with this sid) to the proxy's back-channel URL before it answers, so the admin call runs
        # off this event loop.
        await asyncio.to_thread(keycloak.admin, "DELETE", f"/realms/{REALM}/sessions/{sid}")
        assert await replayed(proxy, stolen) == 401  # already when Keycloak has answered

    closing, upstream_saw = await websocket_closed_by(
        browser, proxy, ws_upstream, admin_signs_the_session_out
    )
    assert (closing.type, closing.data, closing.extra) == (aiohttp.WSMsgType.CLOSE, 1008, "session revoked")
    assert upstream_saw == 1001
    assert (await browser.get(proxy.make_url("/next"), headers=JSON)).status == 401


async def test_admin_signing_a_person_out_everywhere_ends_every_proxy_session_by_the_next_refresh(
    make_proxy: Any, keycloak: Keycloak, registered_for_logout: Any
) -> None:
    # Keycloak's "sign out the user" (all sessions) posts ONE logout token per client, naming the sid
    # of just one of the person's sessions (keycloak/keycloak#22914, #27359): the proxy ends that one
    # at once, and each other session when its next refresh is refused.
    clock = FakeClock(system_clock())
    proxy = await make_proxy(clock, cookie_refresh="1m")
    registered_for_logout(proxy)
    laptops = [
        aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[keycloak.base_url])
        )
        for _ in range(2)
    ]
    try:
        for laptop in laptops:
            assert (await sign_in(laptop, proxy, "bob")).status == 200
        (bob,) = keycloak.admin("GET", f"/realms/{REALM}/users?username=bob&exact=true")
        await asyncio.to_thread(keycloak.admin, "POST", f"/realms/{REALM}/users/{bob['id']}/logout")
        clock.advance(61)
        for laptop in laptops:
            assert (await laptop.get(proxy.make_url("/after"), headers=JSON)).status == 401
    finally:
        for laptop in laptops:
            await laptop.close()
