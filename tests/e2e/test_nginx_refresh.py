"""auth_request mode through a real NGINX: a session refreshed during /oauth2/auth reaches the browser.

The Set-Cookie on the 202 is passed on by the README's `auth_request_set $auth_cookie
$upstream_http_set_cookie; add_header Set-Cookie $auth_cookie;` lines. Refresh tokens rotate at the
provider, so a second refresh only works if the browser really stored the first refreshed cookie.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web.app import build_app
from tests.factories import make_settings
from tests.support.nginx import auth_request_server, sign_in_through
from tests.support.nodeidp import NodeIdP, start_node_idp

pytestmark = pytest.mark.nginx
TTL = {"AccessToken": 5, "IdToken": 5}


@pytest.fixture
def short_idp() -> Iterator[NodeIdP]:
    users = {"alice": {"email": "alice@example.com", "email_verified": True, "groups": ["admins"]}}
    with start_node_idp(users=users, ttl=TTL, skip_consent=True) as idp:
        yield idp


async def signed_in_behind_nginx(
    idp: NodeIdP, clock: FakeClock, aiohttp_server: Any, app_upstream: Any, nginx: Any, browser: Any
) -> URL:
    """The proxy on `clock` behind NGINX in auth_request mode, and the browser signed in through it."""
    settings = make_settings(
        upstream=[str(app_upstream.make_url("/"))],
        oidc_issuer_url=idp.issuer,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        cookie_secure=True,
        reverse_proxy=True,
        set_xauthrequest=True,
    )
    proxy = await aiohttp_server(build_app(settings, clock))
    edge = nginx(auth_request_server(proxy.port, app_upstream.port))
    base = URL(f"https://localhost:{edge.port}")
    _, final = await sign_in_through(browser, base, "/app")
    assert final.status == 200
    return base


def session_cookie(browser: aiohttp.ClientSession) -> str:
    return next(c.value for c in browser.cookie_jar if c.key == "_oidcproxy")


async def test_refreshed_cookie_reaches_the_browser_through_nginx(
    short_idp: NodeIdP, aiohttp_server: Any, app_upstream: Any, nginx: Any, browser_tls: aiohttp.ClientSession
) -> None:
    clock = FakeClock(system_clock())
    base = await signed_in_behind_nginx(short_idp, clock, aiohttp_server, app_upstream, nginx, browser_tls)
    first = session_cookie(browser_tls)

    for _ in range(2):
        clock.advance(6)  # the 5 s tokens look expired to the proxy; the provider's stay within leeway
        page = await browser_tls.get(base / "app", headers={"Accept": "text/html"}, allow_redirects=False)
        assert page.status == 200, await page.text()
        assert "_oidcproxy=" in page.headers.get("Set-Cookie", "")
        assert (await page.json())["headers"]["X-Auth-Request-Email"] == "alice@example.com"
    assert session_cookie(browser_tls) != first

    # The first cookie's refresh token was rotated away: once the refresher's short reuse window for
    # concurrent requests has passed, replaying it ends that session.
    clock.advance(31)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=browser_tls.connector._ssl)) as old:  # type: ignore[union-attr]
        stale = await old.get(
            base / "app",
            headers={"Accept": "text/html", "Cookie": f"_oidcproxy={first}"},
            allow_redirects=False,
        )
        assert stale.status == 302


async def test_refresh_with_tokens_that_fail_validation_signs_in_again_not_500(
    short_idp: NodeIdP, aiohttp_server: Any, app_upstream: Any, nginx: Any, browser_tls: aiohttp.ClientSession
) -> None:
    clock = FakeClock(system_clock())
    base = await signed_in_behind_nginx(short_idp, clock, aiohttp_server, app_upstream, nginx, browser_tls)
    # The proxy's clock runs far ahead of the provider's: refreshed tokens look expired on arrival.
    # /oauth2/auth must still answer 401 (NGINX turns anything but 2xx/401/403 into a 500).
    clock.advance(600)
    page = await browser_tls.get(base / "app", headers={"Accept": "text/html"}, allow_redirects=False)
    assert page.status == 302
    assert "/oauth2/start" in page.headers["Location"]
