"""In a real browser: the login round-trip, WebSockets, sign-out, expiry, 403, two tabs and the chooser of
several providers, against the npm oidc-provider and the embedded provider; every page is screenshot and
checked with axe-core.

Chromium is Debian's, driven by selenium through chromedriver (scripts/test.sh installs both). The
proxy app and the demo upstream run on a loop in a background thread (tests/support/browser.py), so
the blocking selenium calls never stall them. Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from oidcproxy.config import Settings
from oidcproxy.errors import HeadersTooLarge, ProxyError
from oidcproxy.idp import IdPClient, IdPConfig
from oidcproxy.idp.app import DevIdP
from oidcproxy.web.app import build_app
from oidcproxy.web.middleware import page
from oidcproxy.web.pages import PageOptions, Pages
from tests.factories import COOKIE_SECRET
from tests.support.browser import (
    SCREENSHOTS,
    Browser,
    LoopThread,
    ProxyServer,
    ShiftedClock,
    chrome,
    free_port,
    serve_app,
)
from tests.support.nodeidp import NodeIdP, start_node_idp

pytestmark = pytest.mark.browser

DISPLAY_NAME = "Acme SSO"
ALLOWED = {"alice": "alice@example.com"}
EMAILS = {"alice": "alice@example.com", "mallory": "mallory@evil.org"}


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest) -> Path:
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nbrowser screenshots: {SCREENSHOTS}")
    return SCREENSHOTS


@pytest.fixture
def browser_(request: pytest.FixtureRequest, screenshots: Path, loop: LoopThread) -> Iterator[Browser]:
    # Depends on `loop` so the browser closes its pages (and WebSockets) before the servers stop.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    shutil.rmtree(screenshots / name, ignore_errors=True)
    with chrome(screenshots / name) as b:
        yield b


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    with LoopThread() as thread:
        yield thread


@dataclass(slots=True)
class Site:
    """The proxy in front of the whoami demo, and the provider people sign in at."""

    proxy: ProxyServer
    kind: str

    def url(self, path: str) -> str:
        return self.proxy.url(path)


@pytest.fixture(params=["node", "embedded"])
def site_factory(request: pytest.FixtureRequest, loop: LoopThread) -> Any:
    kind = request.param

    def make(**overrides: Any) -> Site:
        values: dict[str, Any] = {
            "upstream": ["builtin:whoami"],
            "email_domain": ["example.com"],
            "provider_display_name": DISPLAY_NAME,
        }
        if kind == "node":
            node: NodeIdP = request.getfixturevalue("node_idp")
            values.update(
                oidc_issuer_url=node.issuer, client_id=node.client_id, client_secret=node.client_secret
            )
        else:
            values["oidc_type"] = "embedded"
        values.update(overrides)
        return Site(ProxyServer.start(loop, ShiftedClock(), **values), kind)

    return make


@pytest.fixture
def site(site_factory: Any) -> Site:
    made: Site = site_factory()
    return made


def on_sign_in_page(b: Browser, site: Site) -> bool:
    return b.url.startswith(site.url("/oauth2/sign_in"))


def at_provider(b: Browser, site: Site) -> bool:
    return not b.url.startswith(site.proxy.origin) or "/dev-idp/" in b.url


def click_sign_in(b: Browser, *, shoot: bool = True) -> None:
    if shoot:
        b.shot("sign-in")
    button = b.find("a.button")
    assert button.text == f"Sign in with {DISPLAY_NAME}"
    b.navigate_by(button.click)


def provider_login(b: Browser, site: Site, who: str, *, check: bool = True) -> None:
    """Fill in the provider's pages as a person would until the browser is back at the proxy."""
    for _ in range(6):
        if not at_provider(b, site):
            b.shot("back-at-proxy")
            return
        if b.has("#login_email"):  # the embedded provider's form
            if check:
                b.check("provider-login")
            else:
                b.shot("provider-login")
            b.find("#login_email").send_keys(EMAILS[who])
            b.find("#login_password").send_keys("pw")
            b.find("#login_name").send_keys(who.title())
            b.find("#login_groups").send_keys("admins, dev")
            b.navigate_by(b.find("form button[type=submit]").click)
        elif b.has("input[name=login]"):  # oidc-provider's devInteractions login page
            b.shot("provider-login")
            b.find("input[name=login]").send_keys(who)
            b.find("input[name=password]").send_keys("pw")
            b.navigate_by(b.find("button[type=submit]").click)
        else:  # oidc-provider's consent page
            b.shot("provider-consent")
            b.navigate_by(b.find("button[type=submit]").click)
    raise AssertionError(f"still at the provider after six pages: {b.url}\n{b.text()}")


def sign_in(b: Browser, site: Site, who: str = "alice", *, check: bool = True) -> None:
    """From the proxy's sign-in page through the provider and back."""
    assert on_sign_in_page(b, site), b.url
    click_sign_in(b, shoot=not check)
    provider_login(b, site, who, check=check)


def whoami_path(b: Browser) -> str:
    return str(b.find("section[aria-labelledby=req] td").text)


def test_deep_link_round_trip(browser_: Browser, site: Site) -> None:
    b = browser_
    deep = "/reports/2024/q3?region=eu-west&sort=-revenue&q=caf%C3%A9+au+lait"
    b.go(site.url(deep))
    assert on_sign_in_page(b, site), b.url
    assert b.title == "Sign in"
    assert DISPLAY_NAME in b.text()
    b.check("sign-in")
    sign_in(b, site)
    assert b.url == site.url(deep)
    assert whoami_path(b) == deep
    assert "alice@example.com" in b.text()
    b.check("whoami")


def test_websocket_page_after_login(browser_: Browser, site: Site) -> None:
    b = browser_
    b.go(site.url("/live"))
    sign_in(b, site, check=False)
    assert b.url == site.url("/live")
    log = b.find("#ws-log")
    b.wait_for(lambda: "connected" in log.text, "the WebSocket did not open through the proxy")
    for message in ("hello through the proxy", "second message"):
        b.find("#ws-input").send_keys(message)
        b.find("#ws-form button").click()
        b.wait_for(lambda m=message: f"echo: {m}" in log.text, f"no echo of {message!r}: {log.text}")
    b.check("websocket-echo")


def websocket_outcome(b: Browser, path: str = "/demo-ws") -> str:
    """Open a WebSocket from the current page; 'open' or 'refused'."""
    return str(
        b.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const s = new WebSocket(location.origin.replace('http', 'ws') + arguments[0]);"
            "s.onopen = () => { s.close(); done('open'); };"
            "s.onerror = () => done('refused');",
            path,
        )
    )


def test_sign_out_closes_the_upstream(browser_: Browser, site: Site) -> None:
    b = browser_
    b.go(site.url("/private?x=1"))
    sign_in(b, site, check=False)
    assert b.url == site.url("/private?x=1")
    assert websocket_outcome(b) == "open"
    b.go(site.url("/oauth2/sign_out"))
    if site.kind == "node":  # RP-initiated logout: oidc-provider asks before it signs out
        assert at_provider(b, site), b.url
        b.shot("provider-sign-out")
        b.navigate_by(b.find("button[name=logout][value=yes]").click)
    assert b.url.startswith(site.url("/oauth2/signed_out")), b.url
    assert b.title == "Signed out"
    assert f"You are signed out at {DISPLAY_NAME} too" in b.text()
    b.check("signed-out")
    assert websocket_outcome(b) == "refused"
    b.go(site.url("/private?x=1"))
    assert on_sign_in_page(b, site), b.url
    assert "whoami" not in b.title
    assert not b.has("#ws-log")
    # The provider's session ended too: signing in again shows its login form, not a silent return.
    click_sign_in(b, shoot=False)
    assert at_provider(b, site), b.url
    assert b.has("input[name=login]") or b.has("#login_email"), b.text()


def test_expired_session_goes_back_through_login(browser_: Browser, site_factory: Any) -> None:
    site: Site = site_factory(cookie_expire="10m")
    b = browser_
    deep = "/dashboards/42?range=7d"
    b.go(site.url(deep))
    sign_in(b, site, check=False)
    assert b.url == site.url(deep)
    site.proxy.clock.advance(601)  # the browser still sends the cookie; the proxy's clock says it is stale
    b.go(site.url(deep))
    assert on_sign_in_page(b, site), b.url
    b.shot("sign-in-after-expiry")
    sign_in(b, site, check=False)
    assert b.url == site.url(deep)
    assert whoami_path(b) == deep


def test_forbidden_email_domain_shows_403_page(browser_: Browser, site: Site) -> None:
    b = browser_
    b.go(site.url("/admin"))
    sign_in(b, site, "mallory", check=False)
    assert b.url.startswith(site.url("/oauth2/callback?")), b.url
    assert b.title == "Access denied"
    text = b.text()
    assert "not allowed to use this application" in text
    assert "error 403" in text.lower()
    rid = b.find("code.rid").text
    assert re.fullmatch(r"[0-9a-f]{16}", rid), rid
    for secret in re.findall(r"(?:code|state)=([^&]+)", b.url):
        assert secret not in b.driver.page_source
    assert b.find("a.button").text == "Sign in with a different account"
    b.check("forbidden-403")
    b.go(site.url("/admin"))
    assert on_sign_in_page(b, site), "a refused login must not leave a session behind"


def test_two_tabs_log_in_at_once(browser_: Browser, site: Site) -> None:
    b = browser_
    first, second = "/tab/one?n=1", "/tab/two?n=2"
    b.go(site.url(first))
    click_sign_in(b)
    assert at_provider(b, site)
    tab_one = b.driver.current_window_handle
    b.driver.switch_to.new_window("tab")
    tab_two = b.driver.current_window_handle
    b.go(site.url(second))
    click_sign_in(b)
    assert at_provider(b, site)
    # Both round-trips are in flight; finish the later one first.
    provider_login(b, site, "alice", check=False)
    assert b.url == site.url(second)
    b.driver.switch_to.window(tab_one)
    provider_login(b, site, "alice", check=False)
    assert b.url == site.url(first)
    assert whoami_path(b) == first
    b.driver.switch_to.window(tab_two)
    b.driver.refresh()
    assert whoami_path(b) == second


# --- error pages and page options (provider-independent: the embedded provider only) ---------------


def embedded_proxy(loop: LoopThread, **overrides: Any) -> Site:
    values: dict[str, Any] = {
        "upstream": ["builtin:whoami"],
        "email_domain": ["example.com"],
        "provider_display_name": DISPLAY_NAME,
        "oidc_type": "embedded",
        **overrides,
    }
    return Site(ProxyServer.start(loop, ShiftedClock(), **values), "embedded")


def held_upstream(loop: LoopThread) -> int:
    """An upstream that accepts requests and answers none of them until the test ends."""
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hold)
    port = serve_app(loop, app)

    async def let_go() -> None:
        release.set()

    loop.on_close(let_go)
    return port


def test_error_pages_for_upstream_trouble(browser_: Browser, loop: LoopThread) -> None:
    dead = free_port()  # nothing listens here
    slow = held_upstream(loop)
    site = embedded_proxy(
        loop,
        upstream=["builtin:whoami", f"http://127.0.0.1:{dead}/broken/", f"http://127.0.0.1:{slow}/slow/"],
        # The one real wait in this file: a socket that never answers is the only way to show a 504.
        upstream_timeout="300ms",
    )
    b = browser_
    b.go(site.url("/"))
    sign_in(b, site, check=False)
    b.go(site.url("/broken/report?id=7"))
    assert b.title == "Application unavailable"
    assert "error 502" in b.text().lower()
    assert str(dead) not in b.driver.page_source, "the upstream's address is for the log, not the page"
    assert b.find("a.button").get_attribute("href") == site.url("/broken/report?id=7")
    b.check("upstream-502")
    b.go(site.url("/slow/export"))
    assert b.title == "Application too slow"
    assert "error 504" in b.text().lower()
    b.check("upstream-504")


def test_login_expired_page_offers_to_try_again(browser_: Browser, loop: LoopThread) -> None:
    site = embedded_proxy(loop)
    b = browser_
    b.go(site.url("/oauth2/callback?code=stale-code&state=forged-state"))
    assert b.title == "Sign-in did not complete"
    assert "error 400" in b.text().lower()
    assert "no login cookie" not in b.text(), "details go to the log unless --show-debug-on-error"
    rid = b.find("code.rid").text
    assert rid
    b.check("login-expired-400")
    button = b.find("a.button")
    assert button.text == "Try again"
    b.navigate_by(button.click)
    provider_login(b, site, "alice", check=False)
    assert b.url == site.url("/")


def test_show_debug_on_error_puts_the_detail_on_the_page(browser_: Browser, loop: LoopThread) -> None:
    site = embedded_proxy(loop, show_debug_on_error=True)
    b = browser_
    b.go(site.url("/oauth2/callback?code=stale-code&state=forged-state"))
    assert "Details for administrators" in b.text()
    assert "no login cookie" in b.text()
    b.check("login-expired-400-debug")


def test_api_clients_get_json_401(loop: LoopThread) -> None:
    site = embedded_proxy(loop)
    request = urllib.request.Request(site.url("/api/items"), headers={"Accept": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 401
    assert caught.value.headers["Content-Type"].startswith("application/json")
    body = json.loads(caught.value.read())
    assert body["status"] == 401
    assert body["error"] == "NotAuthenticated"
    assert re.fullmatch(r"[0-9a-f]{16}", body["request_id"])


def test_every_error_page_passes_axe(browser_: Browser, loop: LoopThread) -> None:
    """Pages no browser journey reaches on demand (500, 431, 401 as HTML, 404) rendered as the
    middleware renders them, served with the same headers, and checked in the browser."""
    rendered = Pages.load(PageOptions(display_name=DISPLAY_NAME))
    examples = {
        "500": rendered.error(500, "Something went wrong", ProxyError.public, "a1b2c3d4e5f60718"),
        "431": rendered.error(431, HeadersTooLarge.title, HeadersTooLarge.public, "a1b2c3d4e5f60718"),
        "401": rendered.error(
            401, "Sign-in required", "You need to sign in.", "a1", action=("/oauth2/sign_in", "Sign in")
        ),
        "404": rendered.error(404, "Not found", "No application is configured for this path.", "a1"),
    }

    async def show(request: web.Request) -> web.Response:
        return page(examples[request.match_info["code"]], status=int(request.match_info["code"]))

    app = web.Application()
    app.router.add_get("/{code}", show)
    port = serve_app(loop, app)
    b = browser_
    for code in examples:
        b.go(f"http://127.0.0.1:{port}/{code}")
        assert f"error {code}" in b.text().lower()
        b.check(f"error-{code}")


def test_banner_footer_logo_and_custom_templates(browser_: Browser, loop: LoopThread, tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
        '<rect width="120" height="40" rx="6" fill="#0b6e4f"/></svg>'
    )
    templates = tmp_path / "templates"
    templates.mkdir()
    layout = (Path(__file__).resolve().parents[2] / "oidcproxy/web/pages/layout.html").read_text()
    (templates / "layout.html").write_text(layout.replace("<body>", '<body class="acme">'))
    site = embedded_proxy(
        loop,
        banner="Staging environment: data is reset every night.",
        footer="Acme Corp IT: it-help@acme.example",
        custom_sign_in_logo=str(logo),
        custom_templates_dir=str(templates),
    )
    b = browser_
    b.go(site.url("/"))
    assert on_sign_in_page(b, site)
    text = b.text()
    assert "Staging environment: data is reset every night." in text
    assert "Acme Corp IT: it-help@acme.example" in text
    assert "Protected by oidcproxy" not in text
    img = b.find("img.logo")
    assert img.get_attribute("src").startswith("data:image/svg+xml;base64,")
    assert b.driver.execute_script("return arguments[0].naturalWidth", img) == 120
    assert b.has("body.acme"), "the layout from --custom-templates-dir is used"
    b.check("sign-in-customised")


# --- several providers: the chooser ---------------------------------------------------------------


def test_chooser_lists_the_providers_and_signs_in_through_each(browser_: Browser, loop: LoopThread) -> None:
    """Two real providers at once on their own ports: the npm oidc-provider and the embedded one."""
    b = browser_
    client = {
        "client_id": "oidcproxy",
        "client_secret": "oidcproxy-secret",
        "redirect_uris": ["http://127.0.0.1/oauth2/callback/staff"],
    }
    with start_node_idp(clients=[client], skip_consent=True) as node:  # alice: alice@example.com
        dev_port = free_port()
        dev = DevIdP(
            IdPConfig(f"http://127.0.0.1:{dev_port}", (IdPClient("px", "s", allow_loopback_redirects=True),))
        )
        serve_app(loop, dev.build_app(), dev_port)
        providers = [
            {"id": "staff", "display_name": "Acme Staff", "oidc_issuer_url": node.issuer,
             "client_id": "oidcproxy", "client_secret": "oidcproxy-secret"},
            {"id": "partners", "display_name": "Partner Portal", "oidc_issuer_url": dev.config.issuer,
             "client_id": "px", "client_secret": "s"},
        ]  # fmt: skip
        flat = {"upstream": ["builtin:whoami"], "email_domain": ["example.com"],
                "cookie_secret": COOKIE_SECRET, "cookie_secure": False}  # fmt: skip
        clock = ShiftedClock()
        port = free_port()
        serve_app(loop, build_app(Settings.from_sources(flat, providers=providers), clock=clock), port)
        site = Site(ProxyServer(port, clock), "two")

        for label, who in (("Partner Portal", "alice"), ("Acme Staff", "alice")):
            b.go(site.url("/reports?q=1"))
            assert on_sign_in_page(b, site), b.url
            assert b.title == "Sign in"
            buttons = [e.text for e in b.driver.find_elements("css selector", ".providers a.button")]
            assert buttons == ["Sign in with Acme Staff", "Sign in with Partner Portal"]
            b.check("chooser")
            chosen = next(
                e for e in b.driver.find_elements("css selector", ".providers a.button") if label in e.text
            )
            b.navigate_by(chosen.click)
            provider_login(b, site, who)
            assert b.url == site.url("/reports?q=1")
            assert "alice@example.com" in b.text()
            b.go(site.url("/oauth2/sign_out"))
