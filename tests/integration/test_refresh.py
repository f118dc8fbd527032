"""Refresh during the request against the real npm oidc-provider with 5-second token lifetimes.

The provider runs on real time; the proxy's FakeClock is moved forward so that the tokens look expired
to the proxy while the provider still honours the refresh token. The token endpoint is reached
through IdPTap (a counting reverse proxy), so the test sees how many refreshes the provider got.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from oidcproxy.model import FakeClock, system_clock
from tests.support.oidcflow import IdPTap, sign_in

TTL = {"AccessToken": 5, "IdToken": 5}
JSON = {"Accept": "application/json"}


def session_cookies(resp: Any) -> dict[str, str]:
    """The session cookie's chunks this response sets (a provider's tokens need several)."""
    return {k: c.value for k, c in resp.cookies.items() if k.startswith("_oidcproxy")}


async def refreshing_proxy(node: Any, make_proxy: Any, aiohttp_server: Any, **overrides: Any) -> Any:
    idp = node(ttl=TTL)
    tap = await IdPTap(idp.issuer).start(aiohttp_server)
    clock = FakeClock(system_clock())
    proxy = await make_proxy(
        idp,
        clock,
        skip_oidc_discovery=True,
        login_url=f"{idp.issuer}/auth",
        redeem_url=tap.url("/token"),
        oidc_jwks_url=f"{idp.issuer}/jwks",
        **overrides,
    )
    return idp, tap, clock, proxy


async def test_concurrent_requests_share_one_refresh_and_get_the_new_cookie(
    node: Any, make_proxy: Any, browser: Any, aiohttp_server: Any
) -> None:
    _, tap, clock, proxy = await refreshing_proxy(node, make_proxy, aiohttp_server)
    assert (await sign_in(browser, proxy, "alice")).status == 200
    for round_ in (1, 2):  # the second round needs the rotated refresh token from the new cookie
        clock.advance(6)
        replies = await asyncio.gather(*(browser.get(proxy.make_url(f"/r{i}")) for i in range(6)))
        assert [r.status for r in replies] == [200] * 6
        assert tap.grants["refresh_token"] == round_
        assert all(session_cookies(r) for r in replies)
    quiet = await browser.get(proxy.make_url("/quiet"))
    assert quiet.status == 200 and not session_cookies(quiet)  # hot path: no rewrite
    assert tap.grants["refresh_token"] == 2


async def test_auth_endpoint_refreshes_and_sets_the_cookie_on_the_202(
    node: Any, make_proxy: Any, browser: Any, aiohttp_server: Any
) -> None:
    _, tap, clock, proxy = await refreshing_proxy(node, make_proxy, aiohttp_server)
    await sign_in(browser, proxy, "alice")
    clock.advance(6)
    resp = await browser.get(proxy.make_url("/oauth2/auth"))
    assert resp.status == 202
    assert session_cookies(resp)
    assert tap.grants["refresh_token"] == 1


async def test_cookie_refresh_refreshes_by_session_age(
    node: Any, make_proxy: Any, browser: Any, aiohttp_server: Any
) -> None:
    idp = node()  # hour-long tokens: only --cookie-refresh makes this refresh
    tap = await IdPTap(idp.issuer).start(aiohttp_server)
    clock = FakeClock(system_clock())
    proxy = await make_proxy(
        idp,
        clock,
        cookie_refresh="1m",
        skip_oidc_discovery=True,
        login_url=f"{idp.issuer}/auth",
        redeem_url=tap.url("/token"),
        oidc_jwks_url=f"{idp.issuer}/jwks",
    )
    await sign_in(browser, proxy, "alice")
    clock.advance(59)
    await browser.get(proxy.make_url("/a"))
    assert tap.grants["refresh_token"] == 0
    clock.advance(2)
    await browser.get(proxy.make_url("/b"))
    assert tap.grants["refresh_token"] == 1


async def test_transient_failure_keeps_the_session_fatal_one_ends_it(
    node: Any, make_proxy: Any, browser: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oidcproxy.audit")
    idp, tap, clock, proxy = await refreshing_proxy(node, make_proxy, aiohttp_server)
    await sign_in(browser, proxy, "alice")
    idp.stop()  # provider down: the tap answers 502
    clock.advance(6)
    assert (await browser.get(proxy.make_url("/down"))).status == 200
    assert (await browser.get(proxy.make_url("/down-again"))).status == 200
    assert tap.grants["refresh_token"] == 1  # rate-limited: no second try within 30 s
    idp.restart()  # a restarted oidc-provider forgot its refresh tokens: invalid_grant
    clock.advance(31)
    ended = await browser.get(proxy.make_url("/after"), headers={"Accept": "application/json"})
    assert ended.status == 401
    assert tap.grants["refresh_token"] == 2
    cleared = session_cookies(ended)
    assert cleared and set(cleared.values()) == {""}  # the session cookie (every chunk) is cleared
    assert (await browser.get(proxy.make_url("/after"), headers={"Accept": "application/json"})).status == 401
    events = [r.fields for r in caplog.records if r.name == "oidcproxy.audit"]  # type: ignore[attr-defined]
    assert [(e["event"], e.get("reason"), e["email"], e["path"]) for e in events] == [
        ("sign_in", None, "alice@example.com", "/oauth2/callback"),
        ("refresh_failed", "invalid_grant", "alice@example.com", "/after"),  # once: the 2nd has no cookie
    ]


async def test_expired_tokens_without_refresh_token_end_the_session(
    node: Any, make_proxy: Any, browser: Any
) -> None:
    client = {
        "client_id": "oidcproxy",
        "client_secret": "oidcproxy-secret",
        "redirect_uris": ["http://127.0.0.1/oauth2/callback"],
        "grant_types": ["authorization_code"],  # no refresh tokens for this client
    }
    idp = node(ttl=TTL, clients=[client])
    clock = FakeClock(system_clock())
    proxy = await make_proxy(idp, clock)
    assert (await sign_in(browser, proxy, "alice")).status == 200
    clock.advance(6)
    resp = await browser.get(proxy.make_url("/x"), headers={"Accept": "application/json"})
    assert resp.status == 401


async def test_an_old_cookie_after_the_reuse_window_is_never_replayed_nor_cleared(
    node: Any, make_proxy: Any, browser: Any, aiohttp_server: Any
) -> None:
    _, tap, clock, proxy = await refreshing_proxy(node, make_proxy, aiohttp_server)
    await sign_in(browser, proxy, "alice")
    old = {c.key: c.value for c in browser.cookie_jar if c.key.startswith("_oidcproxy")}
    clock.advance(6)
    assert (await browser.get(proxy.make_url("/refresh"))).status == 200
    assert tap.grants["refresh_token"] == 1
    clock.advance(31)  # past reuse_s: a request held up since before the refresh, old cookie and all
    async with aiohttp.ClientSession() as late:
        header = "; ".join(f"{k}={v}" for k, v in old.items())
        stale = await late.get(proxy.make_url("/late"), headers={"Cookie": header, **JSON})
        assert stale.status == 401
        assert "Set-Cookie" not in stale.headers  # the browser's newer cookie stays
    assert tap.grants["refresh_token"] == 1  # the rotated token never went back to the provider
    # The browser's newer cookie still refreshes: nothing revoked the grant.
    assert (await browser.get(proxy.make_url("/still"), headers=JSON)).status == 200
    assert tap.grants["refresh_token"] == 2


async def test_claims_only_at_userinfo_survive_a_refresh(node: Any, make_proxy: Any, browser: Any) -> None:
    # Groups and email only at userinfo (Keycloak's realm roles mapped there, say): the refreshed ID
    # token lacks them too, so the proxy asks userinfo again instead of dropping them.
    idp = node(conform_id_token_claims=True)
    clock = FakeClock(system_clock())
    proxy = await make_proxy(idp, clock, cookie_refresh="1m", allowed_group=["admins"])
    assert (await sign_in(browser, proxy, "alice")).status == 200
    clock.advance(61)
    refreshed = await browser.get(proxy.make_url("/after"), headers=JSON)
    assert refreshed.status == 200
    assert session_cookies(refreshed)
    headers = (await refreshed.json())["headers"]
    assert headers["X-Forwarded-Email"] == "alice@example.com"
    assert headers["X-Forwarded-Groups"] == "admins,dev"
