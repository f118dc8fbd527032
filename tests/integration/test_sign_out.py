"""Sign-out that reaches the provider (RP-initiated logout), revokes the refresh token, and refuses a
replayed copy of the old cookie; against the npm oidc-provider and the embedded provider."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.config import cookie_key_material
from oidcproxy.model import Session
from oidcproxy.sessions import KeyRing, SessionCodec
from oidcproxy.sessions.cookies import join_cookie
from oidcproxy.web.appkeys import EMBEDDED_IDP, SETTINGS, SIGN_OUT
from tests.factories import COOKIE_SECRET, walk_login

HTML = {"Accept": "text/html"}


async def _sign_in(proxy: TestServer, browser: aiohttp.ClientSession, provider: Any) -> dict[str, str]:
    final = await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    assert final.status == 200
    return {c.key: c.value for c in browser.cookie_jar if c.key.startswith("_oidcproxy")}


def _session(cookies: dict[str, str]) -> Session:
    codec = SessionCodec(KeyRing([cookie_key_material(COOKIE_SECRET)]), "_oidcproxy")
    sealed = join_cookie("_oidcproxy", cookies)
    assert sealed is not None
    session = codec.decode(sealed)
    assert session is not None
    return session


async def _sign_out(
    proxy: TestServer, browser: aiohttp.ClientSession, provider: Any, query: str = ""
) -> aiohttp.ClientResponse:
    """/oauth2/sign_out, the provider's end_session_endpoint, and back: the last response."""
    out = await browser.get(proxy.make_url("/oauth2/sign_out" + query), headers=HTML, allow_redirects=False)
    assert out.status == 302, await out.text()
    back = await provider.logout(browser, out.headers["Location"])
    assert URL(back).path == "/oauth2/signed_out"
    return await browser.get(back, headers=HTML, allow_redirects=False)


async def _authorize_page(proxy: TestServer, browser: aiohttp.ClientSession) -> tuple[URL, str]:
    """Start a login and follow the provider's redirects: where it stops, and that page."""
    start = await browser.get(proxy.make_url("/oauth2/start"), allow_redirects=False)
    assert start.status == 302
    page = await browser.get(start.headers["Location"], headers=HTML)
    return page.url, await page.text()


async def test_sign_out_ends_the_provider_session_so_the_next_login_asks_again(
    proxy: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    cookies = await _sign_in(proxy, browser, provider)
    id_token = _session(cookies).tokens.id_token
    if provider.kind == "node":
        # Control: while the provider session lasts, a new login comes straight back (no form).
        where, _ = await _authorize_page(proxy, browser)
        assert where.path == "/"
        cookies = {c.key: c.value for c in browser.cookie_jar if c.key.startswith("_oidcproxy")}
        id_token = _session(cookies).tokens.id_token
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), headers=HTML, allow_redirects=False)
    assert out.status == 302
    to = URL(out.headers["Location"])
    assert to.query["id_token_hint"] == id_token
    assert to.query["client_id"] == "oidcproxy"
    assert to.query["post_logout_redirect_uri"] == str(proxy.make_url("/oauth2/signed_out"))
    assert to.query["state"]
    back = await provider.logout(browser, str(to))
    done = await browser.get(back, headers=HTML, allow_redirects=False)
    assert done.status == 200
    assert "You are signed out at" in await done.text()
    where, body = await _authorize_page(proxy, browser)
    assert not where.path.startswith("/oauth2/") and where.path != "/"  # stopped at the provider
    assert ('name="login"' in body) if provider.kind == "node" else ('name="login_email"' in body)


async def test_replayed_copy_of_the_old_cookie_is_refused_after_sign_out(
    proxy: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    cookies = await _sign_in(proxy, browser, provider)
    await _sign_out(proxy, browser, provider)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as thief:
        thief.cookie_jar.update_cookies(cookies, proxy.make_url("/"))
        assert (await thief.get(proxy.make_url("/oauth2/userinfo"))).status == 401
        assert (await thief.get(proxy.make_url("/oauth2/auth"))).status == 401
        api = await thief.get(proxy.make_url("/app"), headers={"Accept": "application/json"})
        assert api.status == 401


async def test_sign_out_revokes_the_refresh_token_at_the_provider(
    proxy: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    cookies = await _sign_in(proxy, browser, provider)
    tokens = _session(cookies).tokens
    assert tokens.refresh_token
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), headers=HTML, allow_redirects=False)
    assert out.status == 302
    await proxy.app[SIGN_OUT].idle()
    async with aiohttp.ClientSession() as http:
        meta = await (await http.get(_discovery_url(proxy, provider))).json()
        client_id = URL(out.headers["Location"]).query["client_id"]
        secret = (
            proxy.app[SETTINGS].client_secret.get_secret_value()
            if provider.kind == "node"
            else proxy.app[EMBEDDED_IDP].config.clients[0].client_secret
        )
        reply = await http.post(
            meta["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
            headers={"Authorization": aiohttp.encode_basic_auth(client_id, secret)},
        )
        assert reply.status == 400
        assert (await reply.json())["error"] == "invalid_grant"


def _discovery_url(proxy: TestServer, provider: Any) -> str:
    if provider.kind == "node":
        return str(provider.node.discovery_url)
    return str(proxy.make_url("/dev-idp/.well-known/openid-configuration"))


@pytest.mark.parametrize(
    ("rd", "lands_on"),
    [
        ("/after?x=1", "/after?x=1"),
        ("https://app.example.com/bye", "https://app.example.com/bye"),
        ("https://evil.example.net/", None),
        ("//evil.example.net/", None),
    ],
)
async def test_rd_after_provider_sign_out_is_checked_like_every_redirect(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any, rd: str, lands_on: str | None
) -> None:
    proxy = await proxy_factory(whitelist_domain=[".example.com"])
    await _sign_in(proxy, browser, provider)
    done = await _sign_out(proxy, browser, provider, "?" + str(URL.build(query={"rd": rd}).query_string))
    if lands_on is None:
        # The open-redirect attempt ends on our own signed-out page (or "/"), never on the other host.
        assert done.status in (200, 302)
        assert "evil" not in done.headers.get("Location", "")
    else:
        assert done.status == 302
        assert done.headers["Location"] == lands_on


async def test_local_sign_out_option_keeps_the_provider_out_of_it(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    proxy = await proxy_factory(provider_sign_out=False)
    cookies = await _sign_in(proxy, browser, provider)
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), headers=HTML, allow_redirects=False)
    assert out.status == 200
    assert "You may still be signed in" in await out.text()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as thief:
        thief.cookie_jar.update_cookies(cookies, proxy.make_url("/"))
        assert (await thief.get(proxy.make_url("/oauth2/userinfo"))).status == 401


async def test_provider_error_on_the_way_back_shows_our_error_page(
    proxy: TestServer, browser: aiohttp.ClientSession
) -> None:
    back = await browser.get(
        proxy.make_url("/oauth2/signed_out?error=invalid_request&error_description=bad"), headers=HTML
    )
    assert back.status == 400
    body = await back.text()
    assert "Sign-out did not complete" in body
    assert "<html" in body.lower()


async def test_backend_logout_url_gets_the_id_token(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any, aiohttp_server: Any
) -> None:
    seen: list[str] = []

    async def logout(request: web.Request) -> web.Response:
        seen.append(request.query["id_token_hint"])
        return web.Response(text="ok")

    backend = web.Application()
    backend.router.add_get("/logout", logout)
    server: TestServer = await aiohttp_server(backend)
    url = str(server.make_url("/logout")) + "?id_token_hint={id_token}"
    proxy = await proxy_factory(backend_logout_url=url, provider_sign_out=False)
    cookies = await _sign_in(proxy, browser, provider)
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), headers=HTML, allow_redirects=False)
    assert out.status == 200
    await proxy.app[SIGN_OUT].idle()
    assert seen == [_session(cookies).tokens.id_token]
