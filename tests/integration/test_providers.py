"""Several providers in one instance, with two real providers at once on their own ports: the npm
oidc-provider ("node", which advertises RFC 9207's `iss`) and our embedded one ("dev", served on its
own port as a separate provider). Each test signs in through them as a browser would.

Refresh counts grants at each: node's token endpoint is reached through IdPTap (a counting reverse
proxy), the embedded provider counts its own requests.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from oidcproxy.config import Settings
from oidcproxy.idp import IdPClient, IdPConfig, subject_for
from oidcproxy.idp.app import DevIdP
from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web.app import build_app
from oidcproxy.web.appkeys import METRICS, PROVIDERS
from tests.factories import COOKIE_SECRET
from tests.support.devidp import dev_login
from tests.support.nodeidp import NodeIdP, provider_login
from tests.support.oidcflow import IdPTap

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
NODE_CLIENT = {
    "client_id": "oidcproxy",
    "client_secret": "oidcproxy-secret",
    "redirect_uris": ["http://127.0.0.1/oauth2/callback/node"],
}


@dataclass
class Two:
    proxy: TestServer
    node: NodeIdP
    dev: DevIdP
    tap: IdPTap | None
    clock: FakeClock


def two_settings(
    upstream: TestServer, node: NodeIdP, dev_issuer: str, node_extra: dict[str, Any], **flat_extra: Any
) -> Settings:
    """node admits example.com members of `admins`; dev admits any verified email."""
    flat = {
        "upstream": [str(upstream.make_url("/"))],
        "cookie_secret": COOKIE_SECRET,
        "cookie_secure": False,
        **flat_extra,
    }
    providers = [
        {
            "id": "node",
            "display_name": "Node Corp",
            "oidc_issuer_url": node.issuer,
            "client_id": node.client_id,
            "client_secret": node.client_secret,
            "email_domains": ["example.com"],
            "allowed_groups": ["admins"],
            **node_extra,
        },
        {
            "id": "dev",
            "display_name": "Partners",
            "oidc_issuer_url": dev_issuer,
            "client_id": "proxy-at-dev",
            "client_secret": "dev-secret",
            "email_domains": ["*"],
        },
    ]
    return Settings.from_sources(flat, providers=providers)


@pytest.fixture
async def two(node: Any, aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any) -> Any:
    async def make(*, tap: bool = False, **settings: Any) -> Two:
        idp = node(clients=[NODE_CLIENT])
        counting = await IdPTap(idp.issuer).start(aiohttp_server) if tap else None
        dev_port = unused_tcp_port_factory()
        dev = DevIdP(
            IdPConfig(
                issuer=f"http://127.0.0.1:{dev_port}",
                clients=(IdPClient("proxy-at-dev", "dev-secret", (), (), allow_loopback_redirects=True),),
            )
        )
        await aiohttp_server(dev.build_app(), port=dev_port)
        node_extra: dict[str, Any] = {}
        if counting is not None:  # node's token endpoint through the counting tap
            node_extra = {
                "skip_oidc_discovery": True,
                "login_url": f"{idp.issuer}/auth",
                "redeem_url": counting.url("/token"),
                "oidc_jwks_url": f"{idp.issuer}/jwks",
            }
        config = two_settings(upstream, idp, dev.config.issuer, node_extra, **settings)
        clock = FakeClock(system_clock())
        proxy = await aiohttp_server(build_app(config, clock))
        return Two(proxy, idp, dev, counting, clock)

    return make


async def start(browser: aiohttp.ClientSession, proxy: TestServer, provider: str, rd: str = "/who") -> str:
    """/oauth2/start for `provider`: answers the provider's authorization URL (login cookie kept)."""
    resp = await browser.get(
        proxy.make_url("/oauth2/start").with_query(provider=provider, rd=rd), allow_redirects=False
    )
    assert resp.status == 302, await resp.text()
    return str(resp.headers["Location"])


async def at_provider(browser: aiohttp.ClientSession, provider: str, url: str, who: str) -> str:
    """Sign in at the provider's own page; answers its redirect back to our callback."""
    if provider == "node":
        return await provider_login(browser, url, login=who)
    return await dev_login(browser, url, email=who, groups="")


async def sign_in(
    browser: aiohttp.ClientSession, proxy: TestServer, provider: str, who: str
) -> aiohttp.ClientResponse:
    """The whole round trip; answers the callback's response (302 back, or the refusal)."""
    back = await at_provider(browser, provider, await start(browser, proxy, provider), who)
    assert URL(back).path == f"/oauth2/callback/{provider}"
    return await browser.get(back, headers=HTML, allow_redirects=False)


async def test_chooser_lists_each_provider_and_each_signs_in(two: Any) -> None:
    env = await two()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        first = await browser.get(env.proxy.make_url("/app"), headers=HTML, allow_redirects=False)
        assert first.status == 302
        page = await browser.get(env.proxy.make_url(first.headers["Location"]), headers=HTML)
        html = await page.text()
        assert "Sign in with Node Corp" in html and "Sign in with Partners" in html
        assert "/oauth2/start?provider=node&amp;rd=%2Fapp" in html
        assert "/oauth2/start?provider=dev&amp;rd=%2Fapp" in html
        # start without a provider while there are several: back to the chooser
        bare = await browser.get(env.proxy.make_url("/oauth2/start?rd=/app"), allow_redirects=False)
        assert bare.status == 302 and bare.headers["Location"].startswith("/oauth2/sign_in")
        unknown = await browser.get(env.proxy.make_url("/oauth2/start?provider=evil"), headers=HTML)
        assert unknown.status == 400

        done = await sign_in(browser, env.proxy, "node", "alice")
        assert done.status == 302 and done.headers["Location"] == "/who"
        seen = await (await browser.get(env.proxy.make_url("/who"))).json()
        assert seen["headers"]["X-Forwarded-Email"] == "alice@example.com"

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        done = await sign_in(browser, env.proxy, "dev", "carol@partner.test")
        assert done.status == 302
        seen = await (await browser.get(env.proxy.make_url("/who"))).json()
        assert seen["headers"]["X-Forwarded-Email"] == "carol@partner.test"
    assert env.dev.requests["/token"] == 1


async def test_a_session_of_one_provider_is_judged_by_its_own_rules(two: Any) -> None:
    """bob@example.com is in no group: node's rules (admins only) refuse him, dev's (any email) admit
    him. His dev session passes the gate and /oauth2/auth: node's rules are not applied to it."""
    env = await two()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        refused = await sign_in(browser, env.proxy, "node", "bob")
        assert refused.status == 403
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        assert (await sign_in(browser, env.proxy, "dev", "bob@example.com")).status == 302
        assert (await browser.get(env.proxy.make_url("/who"))).status == 200
        assert (await browser.get(env.proxy.make_url("/oauth2/auth"))).status == 202
        # per-ingress rules still narrow it
        assert (await browser.get(env.proxy.make_url("/oauth2/auth?allowed_groups=admins"))).status == 403


async def test_callback_with_the_other_providers_code_in_this_state_is_refused(
    two: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Login state A is bound to node. dev's code (its own state B) replayed with state A, at dev's
    callback or at node's, is refused with our 400 page, and no code is redeemed anywhere."""
    env = await two()
    caplog.set_level(logging.INFO, logger="oidcproxy")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        state_a = URL(await start(browser, env.proxy, "node")).query["state"]
        back_b = URL(await at_provider(browser, "dev", await start(browser, env.proxy, "dev"), "eve@x.test"))
        forged = back_b.update_query(state=state_a)
        refused = await browser.get(forged, headers=HTML, allow_redirects=False)
        assert refused.status == 400
        assert "Error 400" in await refused.text()
        assert "bound to 'node'" in caplog.text
        # The same at node's callback path: node always sends iss (RFC 9207), dev's callback did not.
        state_a2 = URL(await start(browser, env.proxy, "node")).query["state"]
        at_node = back_b.with_path("/oauth2/callback/node").with_query({**back_b.query, "state": state_a2})
        assert (await browser.get(at_node, headers=HTML, allow_redirects=False)).status == 400
        assert "callback without iss" in caplog.text
        assert env.dev.requests["/token"] == 0
        # dev's own callback, untouched, still signs in
        assert (await browser.get(back_b, headers=HTML, allow_redirects=False)).status == 302


async def test_iss_that_is_not_the_providers_is_refused(two: Any, caplog: pytest.LogCaptureFixture) -> None:
    env = await two()
    caplog.set_level(logging.INFO, logger="oidcproxy")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        back = URL(await at_provider(browser, "node", await start(browser, env.proxy, "node"), "alice"))
        assert back.query["iss"] == env.node.issuer  # node sends it; we check it
        mixed = back.update_query(iss=env.dev.config.issuer)
        refused = await browser.get(mixed, headers=HTML, allow_redirects=False)
        assert refused.status == 400
        assert "is not this login's provider" in caplog.text
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        assert (await sign_in(browser, env.proxy, "node", "alice")).status == 302


async def test_refresh_goes_to_the_provider_that_signed_the_session_in(two: Any) -> None:
    env = await two(tap=True, cookie_refresh="1m")
    assert env.tap is not None
    node_browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    dev_browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with node_browser, dev_browser:
        assert (await sign_in(node_browser, env.proxy, "node", "alice")).status == 302
        assert (await sign_in(dev_browser, env.proxy, "dev", "carol@partner.test")).status == 302
        assert env.tap.grants == {"authorization_code": 1}
        assert env.dev.requests["/token"] == 1
        env.clock.advance(90)
        assert (await node_browser.get(env.proxy.make_url("/who"))).status == 200
        assert env.tap.grants["refresh_token"] == 1
        assert env.dev.requests["/token"] == 1  # not the dev provider
        assert (await dev_browser.get(env.proxy.make_url("/who"))).status == 200
        assert env.dev.requests["/token"] == 2
        assert env.tap.grants["refresh_token"] == 1  # not node
        seen = await (await dev_browser.get(env.proxy.make_url("/who"))).json()
        assert seen["headers"]["X-Forwarded-Email"] == "carol@partner.test"


async def test_sign_out_and_back_channel_logout_reach_only_the_sessions_provider(two: Any) -> None:
    """RP-initiated logout goes to the session's own provider; a logout token from dev, even one
    naming the same sub as node's session, ends only dev's sessions."""
    env = await two()
    node_browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    dev_browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with node_browser, dev_browser:
        assert (await sign_in(node_browser, env.proxy, "node", "alice")).status == 302
        assert (await sign_in(dev_browser, env.proxy, "dev", "carol@partner.test")).status == 302
        dev_sub = subject_for("carol@partner.test")

        async def logout(token: str) -> int:
            async with aiohttp.ClientSession() as http:
                form = {"logout_token": token}
                async with http.post(env.proxy.make_url("/oauth2/backchannel-logout"), data=form) as resp:
                    return resp.status

        # dev names node's person (sub "alice"): node's session lives on
        assert await logout(env.dev.logout_token("proxy-at-dev", sub="alice")) == 200
        assert (await node_browser.get(env.proxy.make_url("/who"))).status == 200
        # a token from no configured provider is refused
        assert await logout("eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2V2aWwifQ.") == 400
        # dev names its own person: dev's session ends, node's does not
        assert await logout(env.dev.logout_token("proxy-at-dev", sub=dev_sub)) == 200
        assert (await dev_browser.get(env.proxy.make_url("/who"), headers=JSON)).status == 401
        assert (await node_browser.get(env.proxy.make_url("/who"))).status == 200

    # RP-initiated logout of a dev session goes to dev (node is the first provider, dev the second)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        assert (await sign_in(browser, env.proxy, "dev", "dan@partner.test")).status == 302
        out = await browser.get(env.proxy.make_url("/oauth2/sign_out"), allow_redirects=False)
        assert out.status == 302 and out.headers["Location"].startswith(env.dev.config.issuer + "/")
        assert "client_id=proxy-at-dev" in out.headers["Location"]


def promtool(exposition: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is installed by scripts/setup.sh (Debian package prometheus)"
    command = [found, "check", "metrics"]
    return subprocess.run(command, input=exposition, capture_output=True, text=True, timeout=60)


async def test_metrics_carry_the_provider_of_each_sign_in_refresh_call_and_key_set(two: Any) -> None:
    """With --metrics-address, each counter that concerns a provider is labelled with its id: node's
    sign-ins, refusals, refreshes, provider calls and key set fetches apart from dev's; a callback
    at a path of no configured provider counts as provider ""; promtool accepts the exposition."""
    env = await two(metrics_address="127.0.0.1:0", cookie_refresh="1m")
    metrics = env.proxy.app[METRICS]
    assert metrics.registry is not None

    def seen(name: str, **labels: str) -> float:
        assert metrics.registry is not None
        return metrics.registry.get_sample_value(name, labels) or 0.0

    node_browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    dev_browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with node_browser, dev_browser:
        assert (await sign_in(node_browser, env.proxy, "node", "alice")).status == 302
        assert (await sign_in(dev_browser, env.proxy, "dev", "carol@partner.test")).status == 302
        assert (await sign_in(dev_browser, env.proxy, "node", "bob")).status == 403  # node's rules
        for browser in (node_browser, dev_browser):
            forged = await browser.get(
                env.proxy.make_url("/oauth2/callback/dev?state=x&code=y"), headers=HTML
            )
            assert forged.status == 400
        evil = await node_browser.get(
            env.proxy.make_url("/oauth2/callback/evil?state=x&code=y"), headers=HTML
        )
        assert evil.status == 400
        dev_browser.cookie_jar.clear()
        assert (await sign_in(dev_browser, env.proxy, "dev", "carol@partner.test")).status == 302
        env.clock.advance(90)
        assert (await node_browser.get(env.proxy.make_url("/who"))).status == 200  # refreshed at node
        assert (await dev_browser.get(env.proxy.make_url("/who"))).status == 200  # refreshed at dev
        assert (await dev_browser.get(env.proxy.make_url("/who"))).status == 200  # fresh now

    for pid, started, completed in (("node", 2, 1), ("dev", 2, 2)):
        assert seen("oidcproxy_logins_started_total", provider=pid) == started
        assert seen("oidcproxy_logins_completed_total", provider=pid) == completed
        assert (
            seen("oidcproxy_provider_requests_total", endpoint="discovery", outcome="ok", provider=pid) == 1
        )
        assert seen("oidcproxy_refreshes_total", outcome="ok", provider=pid) == 1
        # the code redeemed for each sign-in, then the refresh grant
        assert seen("oidcproxy_provider_requests_total", endpoint="token", outcome="ok", provider=pid) == (
            started + 1
        )
        assert seen("oidcproxy_provider_request_duration_seconds_count", endpoint="token", provider=pid) == (
            started + 1
        )
    assert seen("oidcproxy_auth_decisions_total", outcome="cookie", provider="node") == 1
    assert seen("oidcproxy_auth_decisions_total", outcome="cookie", provider="dev") == 2
    assert seen("oidcproxy_login_failures_total", reason="forbidden", provider="node") == 1
    assert seen("oidcproxy_login_failures_total", reason="state", provider="dev") == 2
    assert seen("oidcproxy_login_failures_total", reason="state", provider="") == 1  # not "evil"
    assert seen("oidcproxy_provider_requests_total", endpoint="other", outcome="ok", provider="") == 0

    metrics.sync()  # what a scrape does first: each provider's own key set, mirrored
    for provider in env.proxy.app[PROVIDERS]:
        keys = provider.client.keys
        assert keys is not None and keys.fetches >= 1
        assert seen("oidcproxy_jwks_fetches_total", outcome="ok", provider=provider.id) == keys.fetches
        assert seen(
            "oidcproxy_provider_requests_total", endpoint="jwks", outcome="ok", provider=provider.id
        ) == (keys.fetches)
    exposition = generate_latest(metrics.registry).decode()
    labelled = {
        s.labels.get("provider") for f in text_string_to_metric_families(exposition) for s in f.samples
    }
    assert labelled == {None, "", "node", "dev"}, "bounded: the configured ids, none, or no such label"
    checked = promtool(exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_one_providers_entry_with_its_own_callback_path_signs_in(
    node: Any, aiohttp_server: Any, upstream: TestServer, unused_tcp_port: int
) -> None:
    """A single [[providers]] entry must name /oauth2/callback/<id> as its redirect_url (the config
    check says so); a callback there is that provider's, not a mix-up."""
    callback = f"http://127.0.0.1:{unused_tcp_port}/oauth2/callback/node"
    idp = node(clients=[{**NODE_CLIENT, "redirect_uris": [callback]}])
    flat = {"upstream": [str(upstream.make_url("/"))], "cookie_secret": COOKIE_SECRET, "cookie_secure": False}
    entry = {
        "id": "node",
        "oidc_issuer_url": idp.issuer,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "redirect_url": callback,
        "email_domains": ["example.com"],
    }
    proxy = await aiohttp_server(
        build_app(Settings.from_sources(flat, providers=[entry])), port=unused_tcp_port
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        done = await sign_in(browser, proxy, "node", "alice")
        assert done.status == 302 and done.headers["Location"] == "/who", await done.text()
