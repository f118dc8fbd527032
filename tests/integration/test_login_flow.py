"""The whole login flow against the real npm oidc-provider, a real upstream and the real proxy."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.factories import walk_login

HTML = {"Accept": "text/html"}


async def test_deep_link_round_trip_and_identity_headers(
    proxy: TestServer, browser: Any, provider: Any
) -> None:
    final = await walk_login(browser, proxy.make_url("/"), "/app/x?y=1&z=%2F", provider.login, login="alice")
    assert final.status == 200
    seen = await final.json()
    assert seen["path"] == "/app/x?y=1&z=%2F"
    headers = seen["headers"]
    assert headers["X-Forwarded-Email"] == "alice@example.com"
    assert headers["X-Forwarded-User"] == "alice@example.com"
    assert headers["X-Forwarded-Preferred-Username"] == "alice"
    assert headers["X-Forwarded-Groups"] == "admins,dev"
    assert "Authorization" not in headers


async def test_forged_identity_headers_and_own_cookies_never_reach_upstream(
    proxy: TestServer, browser: Any, provider: Any
) -> None:
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    forged = {
        "X-Forwarded-Email": "root@example.com",
        "X-Forwarded-User": "root",
        "X-Forwarded-Groups": "admins",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "Cookie": "theme=dark",
    }
    resp = await browser.get(proxy.make_url("/who"), headers=forged)
    seen = await resp.json()
    pairs = seen["header_list"]
    assert [v for k, v in pairs if k.lower() == "x-forwarded-email"] == ["alice@example.com"]
    assert [v for k, v in pairs if k.lower() == "x-forwarded-user"] == ["alice@example.com"]
    assert [v for k, v in pairs if k.lower() == "x-forwarded-for"] == ["127.0.0.1"]
    assert [v for k, v in pairs if k.lower() == "x-forwarded-host"] != ["evil.example"]
    cookie = seen["headers"].get("Cookie", "")
    assert "theme=dark" in cookie
    assert "_oidcproxy" not in cookie


async def test_authorization_and_access_token_passed_with_their_flags(
    proxy_factory: Any, browser: Any, provider: Any
) -> None:
    proxy = await proxy_factory(pass_authorization_header=True, pass_access_token=True)
    final = await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    headers = (await final.json())["headers"]
    assert headers["Authorization"].startswith("Bearer ey")
    assert headers["X-Forwarded-Access-Token"]


async def test_no_session_browser_redirected_api_client_gets_401(proxy: TestServer, browser: Any) -> None:
    page = await browser.get(proxy.make_url("/x?a=1"), headers=HTML, allow_redirects=False)
    assert page.status == 302
    assert page.headers["Location"] == "/oauth2/sign_in?rd=%2Fx%3Fa%3D1"
    api = await browser.get(proxy.make_url("/x"), headers={"Accept": "application/json"})
    assert api.status == 401
    assert (await api.json())["status"] == 401


async def test_tampered_cookie_sends_person_back_to_sign_in(
    proxy: TestServer, browser: Any, provider: Any
) -> None:
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    jar = {c.key: c.value for c in browser.cookie_jar}
    sealed = jar["_oidcproxy"]
    flipped = sealed[:-5] + ("A" if sealed[-5] != "A" else "B") + sealed[-4:]
    async with aiohttp.ClientSession() as other:
        resp = await other.get(
            proxy.make_url("/"), headers={**HTML, "Cookie": f"_oidcproxy={flipped}"}, allow_redirects=False
        )
        assert resp.status == 302
        assert resp.headers["Location"].startswith("/oauth2/sign_in")
        good = await other.get(proxy.make_url("/"), headers={"Cookie": f"_oidcproxy={sealed}"})
        assert good.status == 200


async def test_refused_email_domain_gets_403_page(proxy: TestServer, browser: Any, provider: Any) -> None:
    final = await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="mallory")
    assert final.status == 403
    text = await final.text()
    assert "Access denied" in text
    assert "_oidcproxy=" not in final.headers.get("Set-Cookie", "").replace("_oidcproxy=;", "")


@pytest.mark.parametrize("provider", ["node"], indirect=True)  # the embedded one verifies every email
async def test_unverified_email_refused_unless_allowed(
    proxy_factory: Any, browser: Any, provider: Any
) -> None:
    strict = await proxy_factory()
    final = await walk_login(browser, strict.make_url("/"), "/", provider.login, login="eve")
    assert final.status == 403
    lenient = await proxy_factory(insecure_allow_unverified_email=True)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as fresh:
        final = await walk_login(fresh, lenient.make_url("/"), "/", provider.login, login="eve")
        assert final.status == 200


async def test_replayed_callback_and_state_mismatch_refused_with_retry(
    proxy: TestServer, browser: Any, provider: Any
) -> None:
    start = await browser.get(proxy.make_url("/oauth2/start?rd=/here"), allow_redirects=False)
    callback = await provider.login(browser, start.headers["Location"], login="alice")
    first = await browser.get(callback, allow_redirects=False)
    assert first.status == 302
    assert first.headers["Location"] == "/here"
    again = await browser.get(callback, headers=HTML, allow_redirects=False)
    assert again.status == 400
    body = await again.text()
    assert "Try again" in body and "/oauth2/start" in body
    wrong = URL(callback).update_query(state="not-the-state")
    mismatch = await browser.get(wrong, headers=HTML, allow_redirects=False)
    assert mismatch.status == 400
    dup = URL(callback).extend_query(state="x")
    duplicated = await browser.get(dup, headers=HTML, allow_redirects=False)
    assert duplicated.status == 400


async def test_callback_is_not_cached_and_leaks_no_referrer(
    proxy: TestServer, browser: Any, provider: Any
) -> None:
    start = await browser.get(proxy.make_url("/oauth2/start"), allow_redirects=False)
    callback = await provider.login(browser, start.headers["Location"], login="alice")
    done = await browser.get(callback, allow_redirects=False)
    assert done.headers["Cache-Control"] == "no-store"
    assert done.headers["Referrer-Policy"] == "no-referrer"
    cookie = done.cookies["_oidcproxy"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"


async def test_sign_out_clears_session(proxy_factory: Any, browser: Any, provider: Any) -> None:
    proxy = await proxy_factory(provider_sign_out=False)  # through the provider: test_sign_out.py
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    assert (await browser.get(proxy.make_url("/oauth2/userinfo"))).status == 200
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), headers=HTML)
    assert out.status == 200
    assert "signed out" in (await out.text())
    after = await browser.get(proxy.make_url("/x"), headers=HTML, allow_redirects=False)
    assert after.status == 302


async def test_userinfo_json(proxy: TestServer, browser: Any, provider: Any) -> None:
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    info = await (await browser.get(proxy.make_url("/oauth2/userinfo"))).json()
    assert info == {
        "user": "alice@example.com",
        "email": "alice@example.com",
        "preferred_username": "alice",
        "groups": ["admins", "dev"],
    }


@pytest.mark.parametrize(
    "rd",
    [
        "//evil.com",
        "/\\evil.com",
        "https://evil.com",
        "/%2F%2Fevil.com",
        "/%2f%2fevil.com",
        "/%5Cevil.com",
        "/\tevil",
        "evil.com",
        "javascript:alert(1)",
    ],
)
async def test_open_redirect_attempts_land_on_root(
    proxy: TestServer, browser: Any, rd: str, provider: Any
) -> None:
    start = await browser.get(proxy.make_url("/oauth2/start").with_query(rd=rd), allow_redirects=False)
    callback = await provider.login(browser, start.headers["Location"], login="alice")
    done = await browser.get(callback, allow_redirects=False)
    assert done.status == 302
    assert done.headers["Location"] == "/"


async def test_sign_in_page_and_skip_provider_button(proxy_factory: Any, browser: Any) -> None:
    proxy = await proxy_factory(provider_display_name="Acme SSO")
    page = await browser.get(proxy.make_url("/oauth2/sign_in?rd=/deep"))
    assert "Sign in with Acme SSO" in await page.text()
    skipping = await proxy_factory(skip_provider_button=True)
    direct = await browser.get(skipping.make_url("/oauth2/sign_in?rd=/deep"), allow_redirects=False)
    assert direct.status == 302
    assert "/auth" in direct.headers["Location"] or "authorize" in direct.headers["Location"]


async def test_ping_and_ready(proxy: TestServer, browser: Any) -> None:
    assert (await browser.get(proxy.make_url("/ping"))).status == 200
    assert (await browser.get(proxy.make_url("/ready"))).status == 200


async def test_auth_request_statuses(proxy: TestServer, browser: Any, provider: Any) -> None:
    assert (await browser.get(proxy.make_url("/oauth2/auth"), headers=HTML)).status == 401
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    assert (await browser.get(proxy.make_url("/oauth2/auth"))).status == 202
