"""Through a real NGINX with TLS: login with an ID token over 8 KB, the callback built as https, the
session split over cookies, the full bearer header on plain requests and WebSocket upgrades, and the
auth_request topology. The same without `X-Forwarded-Proto` shows the documented pitfall."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.support.nginx import Tls, auth_request_server, sidecar_server, sign_in_through
from tests.support.nodeidp import provider_logout

pytestmark = pytest.mark.nginx
HTML = {"Accept": "text/html"}


def _claims(jwt: str) -> dict[str, Any]:
    body = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


async def test_sidecar_login_big_token_cookies_bearer_and_websocket(
    oidcproxy: Any, nginx: Any, browser_tls: aiohttp.ClientSession
) -> None:
    proxy = await oidcproxy()
    edge = nginx(sidecar_server(proxy.port))
    base = URL(f"https://localhost:{edge.port}")

    redirect_uri, final = await sign_in_through(browser_tls, base, "/dash?x=1")
    assert redirect_uri == f"https://localhost:{edge.port}/oauth2/callback"
    assert final.status == 200, await final.text()
    seen = await final.json()
    assert seen["path"] == "/dash?x=1"
    bearer = seen["headers"]["Authorization"]
    id_token = bearer.removeprefix("Bearer ")
    assert len(bearer) > 8192
    assert len(_claims(id_token)["groups"]) > 500  # the whole token arrived, not a truncated one

    names = sorted(c.key for c in browser_tls.cookie_jar if c.key.startswith("_oidcproxy"))
    assert names[:2] == ["_oidcproxy_0", "_oidcproxy_1"] and "_oidcproxy" not in names
    assert all(c["secure"] for c in browser_tls.cookie_jar if c.key.startswith("_oidcproxy"))

    wss = URL(f"wss://localhost:{edge.port}/ws")
    async with browser_tls.ws_connect(wss, protocols=("chat",), origin=str(base)) as ws:
        assert ws.protocol == "chat"
        hello = (await ws.receive_json())["hello"]
        assert hello["Authorization"] == bearer
        assert hello["X-Forwarded-Proto"] == "https"
        await ws.send_str("hi")
        assert await ws.receive_str() == "echo:hi"
        await ws.send_bytes(b"abc")
        assert await ws.receive_bytes() == b"cba"
    assert "upstream sent too big header" not in edge.error_log()


async def test_without_forwarded_proto_the_callback_is_built_as_http(
    oidcproxy: Any, nginx: Any, browser_tls: aiohttp.ClientSession
) -> None:
    """The pitfall the dashboards' documentation warns about, shown so the test above can fail."""
    proxy = await oidcproxy()
    edge = nginx(sidecar_server(proxy.port, forwarded_proto=False))
    start = await browser_tls.get(f"https://localhost:{edge.port}/oauth2/start", allow_redirects=False)
    redirect_uri = URL(start.headers["Location"]).query["redirect_uri"]
    assert redirect_uri == f"http://localhost:{edge.port}/oauth2/callback"


async def test_untrusted_nginx_forwarded_headers_are_ignored(
    oidcproxy: Any, nginx: Any, browser_tls: aiohttp.ClientSession
) -> None:
    proxy = await oidcproxy(trusted_proxy_ip=["10.0.0.0/8"])
    edge = nginx(sidecar_server(proxy.port))
    start = await browser_tls.get(f"https://localhost:{edge.port}/oauth2/start", allow_redirects=False)
    assert URL(start.headers["Location"]).query["redirect_uri"].startswith("http://")


async def test_auth_request_topology(
    oidcproxy: Any, nginx: Any, browser_tls: aiohttp.ClientSession, app_upstream: Any, tls: Tls
) -> None:
    proxy = await oidcproxy(set_xauthrequest=True, set_authorization_header=True)
    edge = nginx(auth_request_server(proxy.port, app_upstream.port))
    base = URL(f"https://localhost:{edge.port}")

    anonymous = await browser_tls.get(base / "app", headers=HTML, allow_redirects=False)
    assert anonymous.status == 302
    assert anonymous.headers["Location"].endswith("/oauth2/start?rd=" + f"https://localhost:{edge.port}/app")
    redirect_uri, final = await sign_in_through(browser_tls, base, "/app/page")
    assert redirect_uri == f"https://localhost:{edge.port}/oauth2/callback"
    assert final.status == 200, await final.text()
    seen = await final.json()
    assert seen["path"] == "/app/page"
    headers = seen["headers"]
    assert headers["X-Auth-Request-Email"] == "alice@example.com"
    assert len(headers["X-Auth-Request-Groups"].split(",")) > 500
    assert len(headers["Authorization"]) > 8192
    assert len(_claims(headers["Authorization"].removeprefix("Bearer "))["groups"]) > 500

    # Without the session cookie no client header gets past auth_request.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client)) as other:
        spoof = {"User-Agent": "GoogleHC/1.0", "X-Auth-Request-Email": "alice@example.com"}
        stranger = await other.get(base / "app", headers=spoof, allow_redirects=False)
        assert stranger.status == 302


async def test_auth_request_topology_sign_out_through_the_provider(
    oidcproxy: Any, nginx: Any, browser_tls: aiohttp.ClientSession, app_upstream: Any, tls: Tls
) -> None:
    proxy = await oidcproxy(set_xauthrequest=True)
    edge = nginx(auth_request_server(proxy.port, app_upstream.port))
    base = URL(f"https://localhost:{edge.port}")
    _, final = await sign_in_through(browser_tls, base, "/app/page")
    assert final.status == 200, await final.text()
    cookies = {c.key: c.value for c in browser_tls.cookie_jar if c.key.startswith("_oidcproxy")}

    rd = f"https://localhost:{edge.port}/app/bye"
    out = await browser_tls.get(
        (base / "oauth2/sign_out").with_query(rd=rd), headers=HTML, allow_redirects=False
    )
    assert out.status == 302, await out.text()
    to = URL(out.headers["Location"])
    # The way back is built from the browser's view through NGINX (X-Forwarded-Proto, Host).
    assert to.query["post_logout_redirect_uri"] == f"https://localhost:{edge.port}/oauth2/signed_out"
    # This ID token is over 8 KB (600 groups): too long for a URL, so the provider asks instead.
    assert "id_token_hint" not in to.query and to.query["client_id"] == "oidcproxy"
    back = await provider_logout(browser_tls, str(to))
    assert back.startswith(f"https://localhost:{edge.port}/oauth2/signed_out?state=")
    done = await browser_tls.get(back, headers=HTML, allow_redirects=False)
    assert (done.status, done.headers["Location"]) == (302, rd)
    after = await browser_tls.get(base / "app/page", headers=HTML, allow_redirects=False)
    assert after.status == 302  # auth_request answered 401: sign in again

    # A copy of the old cookie is refused by auth_request too.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls.client), cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as thief:
        thief.cookie_jar.update_cookies(cookies, base)
        replay = await thief.get(base / "app/page", headers=HTML, allow_redirects=False)
        assert replay.status == 302
