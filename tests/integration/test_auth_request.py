"""/oauth2/auth for NGINX auth_request, and /oauth2/start?rd=<full URL>, through the real proxy."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.factories import walk_login

pytestmark = pytest.mark.parametrize("provider", ["node"], indirect=True)


async def test_auth_answers_401_202_403_and_identity_headers(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    proxy = await proxy_factory(set_xauthrequest=True, set_authorization_header=True, pass_access_token=True)
    auth = proxy.make_url("/oauth2/auth")
    anonymous = await browser.get(auth, headers={"User-Agent": "kube-probe/1.30", "Accept": "text/html"})
    assert (anonymous.status, await anonymous.read()) == (401, b"")
    assert "Location" not in anonymous.headers

    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    ok = await browser.get(auth)
    assert ok.status == 202
    assert await ok.read() == b""
    assert ok.headers["X-Auth-Request-Email"] == "alice@example.com"
    assert ok.headers["X-Auth-Request-User"] == "alice@example.com"
    assert ok.headers["X-Auth-Request-Preferred-Username"] == "alice"
    assert ok.headers["X-Auth-Request-Groups"] == "admins,dev"
    assert ok.headers["X-Auth-Request-Access-Token"]
    assert ok.headers["Authorization"].startswith("Bearer ey")

    assert (await browser.get(auth.with_query(allowed_groups="dev,ops"))).status == 202
    assert (await browser.get(auth.with_query(allowed_groups="ops"))).status == 403
    assert (await browser.get(auth.with_query(allowed_emails="alice@example.com"))).status == 202
    assert (await browser.get(auth.with_query(allowed_emails="bob@example.com"))).status == 403


async def test_auth_without_flags_sends_no_identity_headers(
    proxy: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    ok = await browser.get(proxy.make_url("/oauth2/auth"))
    assert ok.status == 202
    assert not [k for k in ok.headers if k.lower().startswith("x-auth-request")]
    assert "Authorization" not in ok.headers


@pytest.mark.parametrize(
    ("rd", "lands_on"),
    [
        ("https://grafana.apps.example.com/d/abc?x=1", "https://grafana.apps.example.com/d/abc?x=1"),
        ("https://evil.example.net/steal", "/"),
        ("https://apps.example.com.evil.net/", "/"),
        ("/local/path", "/local/path"),
    ],
)
async def test_start_with_full_url_rd_honours_whitelist(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any, rd: str, lands_on: str
) -> None:
    proxy = await proxy_factory(whitelist_domain=[".apps.example.com"])
    start = await browser.get(proxy.make_url("/oauth2/start").with_query(rd=rd), allow_redirects=False)
    assert start.status == 302
    callback = await provider.login(browser, start.headers["Location"], login="alice")
    done = await browser.get(callback, allow_redirects=False)
    assert done.status == 302
    assert done.headers["Location"] == lands_on


async def test_start_builds_callback_from_trusted_forwarded_headers(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dash.example.com"}
    trusting = await proxy_factory(reverse_proxy=True, whitelist_domain=["dash.example.com"])
    start = await browser.get(trusting.make_url("/oauth2/start"), headers=forwarded, allow_redirects=False)
    redirect_uri = URL(start.headers["Location"]).query["redirect_uri"]
    assert redirect_uri == "https://dash.example.com/oauth2/callback"

    untrusted = await proxy_factory(reverse_proxy=True, trusted_proxy_ip=["10.0.0.0/8"])
    start = await browser.get(untrusted.make_url("/oauth2/start"), headers=forwarded, allow_redirects=False)
    assert URL(start.headers["Location"]).query["redirect_uri"] == str(untrusted.make_url("/oauth2/callback"))

    explicit = await proxy_factory(reverse_proxy=True, redirect_url="https://sso.example.com/oauth2/callback")
    start = await browser.get(explicit.make_url("/oauth2/start"), headers=forwarded, allow_redirects=False)
    assert URL(start.headers["Location"]).query["redirect_uri"] == "https://sso.example.com/oauth2/callback"
