"""Forwarded-header trust, large headers (431), skip-auth and API routes through the real proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.factories import walk_login
from tests.support.nginx import big_header_upstream

pytestmark = pytest.mark.parametrize("provider", ["node"], indirect=True)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    """Like the dashboards behind NGINX, this upstream takes 64 KiB header lines."""
    server: TestServer = await aiohttp_server(big_header_upstream())
    return server


SPOOF = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}


def _values(seen: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in seen["header_list"] if k.lower() == name.lower()]


async def test_spoofed_forwarded_headers_from_untrusted_peer_replaced_and_warned(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await proxy_factory(reverse_proxy=True, trusted_proxy_ip=["10.0.0.0/8"])
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    with caplog.at_level(logging.WARNING, logger="oidcproxy.forwarded"):
        for _ in range(2):
            seen = await (await browser.get(proxy.make_url("/who"), headers=SPOOF)).json()
    assert _values(seen, "X-Forwarded-For") == ["127.0.0.1"]
    assert _values(seen, "X-Forwarded-Proto") == ["http"]
    assert _values(seen, "X-Forwarded-Host") == [f"127.0.0.1:{proxy.port}"]
    warnings = [r.getMessage() for r in caplog.records if "untrusted peer" in r.getMessage()]
    assert len(warnings) == 1
    assert "127.0.0.1" in warnings[0] and "--trusted-proxy-ip=127.0.0.1/32" in warnings[0]


async def test_trusted_proxy_chain_is_extended(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    proxy = await proxy_factory(reverse_proxy=True, whitelist_domain=["dash.example.com"])
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    sent = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "dash.example.com",
    }
    seen = await (await browser.get(proxy.make_url("/who"), headers=sent)).json()
    assert _values(seen, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert _values(seen, "X-Forwarded-Proto") == ["https"]
    assert _values(seen, "X-Forwarded-Host") == ["dash.example.com"]


async def test_large_bearer_header_reaches_upstream_and_1mb_header_gets_431(
    proxy: Any, browser: aiohttp.ClientSession, provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    bearer = "Bearer " + "a" * 40_000
    seen = await (await browser.get(proxy.make_url("/who"), headers={"X-Api-Token": bearer})).json()
    assert seen["headers"]["X-Api-Token"] == bearer

    with caplog.at_level(logging.WARNING, logger="oidcproxy"):
        huge = await browser.get(proxy.make_url("/who"), headers={"X-Huge": "x" * (1 << 20)})
        assert huge.status == 431
        assert "headers are larger than this proxy accepts" in await huge.text()
        many = {f"X-Part-{i}": "y" * 30_000 for i in range(6)}  # each line fits, 180 KB in all does not
        total = await browser.get(proxy.make_url("/who"), headers=many)
        assert total.status == 431
    assert sum("431 to 127.0.0.1" in r.getMessage() for r in caplog.records) == 2


async def _raw_request(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request over a plain socket; (status, headers with lower-case names, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        raw = await reader.read()  # the 431 closes the connection, so EOF ends the answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    top, _, body = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


def _head(*lines: str) -> bytes:
    return (
        "\r\n".join(["GET /who HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *lines]) + "\r\n\r\n"
    ).encode()


async def test_431_is_the_error_page_or_json_with_a_request_id(
    proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Any other error page of ours, for the look the 431 must share.
    status, _, other = await _raw_request(
        proxy.port, _head("Accept: text/html").replace(b"/who", b"/oauth2/callback")
    )
    assert status == 400
    with caplog.at_level(logging.WARNING, logger="oidcproxy"):
        # One line over the limit: the parser stops before Accept is kept, so the page is sent.
        status, headers, body = await _raw_request(proxy.port, _head("Authorization: Bearer " + "x" * 70_000))
        assert status == 431
        assert headers["content-type"].startswith("text/html")
        page = body.decode()
        rid = re.search(r'<code class="rid">([0-9a-f]+)</code>', page)
        assert rid is not None and headers["x-request-id"] == rid.group(1)
        assert '<h1 id="heading">Request headers too large</h1>' in page
        assert "Clear this site&#x27;s cookies" in page
        untitled = [re.sub(r"<title>.*?</title>", "", p.split("<body")[0]) for p in (page, other.decode())]
        assert untitled[0] == untitled[1]  # the same head and stylesheet as every other error page
        # Each line fits but all together do not: Accept is known, and honoured both ways.
        many = [f"X-Part-{i}: " + "y" * 30_000 for i in range(5)]
        status, headers, body = await _raw_request(proxy.port, _head("Accept: text/html", *many))
        assert (status, headers["content-type"].split(";")[0]) == (431, "text/html")
        assert "Request headers too large" in body.decode()
        status, headers, body = await _raw_request(proxy.port, _head("Accept: application/json", *many))
        assert (status, headers["content-type"].split(";")[0]) == (431, "application/json")
        answer = json.loads(body)
        assert answer["error"] == "HeadersTooLarge" and answer["status"] == 431
        assert "--max-header-size" in answer["message"] and answer["request_id"] == headers["x-request-id"]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("431 to 127.0.0.1")]
    assert len(logged) == 3
    assert f"[request_id={rid.group(1)}]" in logged[0]
    assert "xxxxxxxx" not in caplog.text  # no piece of the token in the log
    assert f"[request_id={answer['request_id']}]" in logged[2]


async def test_max_header_size_is_configurable(proxy_factory: Any, browser: aiohttp.ClientSession) -> None:
    proxy = await proxy_factory(max_header_size=16384)
    resp = await browser.get(proxy.make_url("/oauth2/auth"), headers={"X-Big": "z" * 20_000})
    assert resp.status == 431
    assert (await browser.get(proxy.make_url("/oauth2/auth"), headers={"X-Big": "z" * 12_000})).status == 401


async def test_skip_auth_routes_cannot_be_escaped_by_path_tricks(
    proxy_factory: Any, browser: aiohttp.ClientSession
) -> None:
    proxy = await proxy_factory(skip_auth_route=["^/public/", "POST=^/hooks/"], skip_auth_preflight=True)
    json = {"Accept": "application/json"}
    assert (await browser.get(proxy.make_url("/public/a.css"), headers=json)).status == 200
    for trick in ("/public/../admin", "/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/..%2Fadmin"):
        resp = await browser.get(URL(f"http://127.0.0.1:{proxy.port}{trick}", encoded=True), headers=json)
        assert resp.status == 401, trick
    assert (await browser.post(proxy.make_url("/hooks/x"), headers=json)).status == 200
    assert (await browser.get(proxy.make_url("/hooks/x"), headers=json)).status == 401
    preflight = {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}
    assert (await browser.options(proxy.make_url("/api/x"), headers=preflight)).status == 200
    assert (await browser.options(proxy.make_url("/api/x"), headers=json)).status == 401


async def test_api_route_answers_401_instead_of_redirect(
    proxy_factory: Any, browser: aiohttp.ClientSession
) -> None:
    proxy = await proxy_factory(api_route=["^/api/"])
    html = {"Accept": "text/html"}
    api = await browser.get(proxy.make_url("/api/v1/things"), headers=html, allow_redirects=False)
    assert api.status == 401
    page = await browser.get(proxy.make_url("/dash"), headers=html, allow_redirects=False)
    assert page.status == 302


FORWARDED_HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "localhost"}


def _secure(resp: aiohttp.ClientResponse) -> dict[str, bool]:
    """Each Set-Cookie name -> whether it carries the Secure attribute."""
    out = {}
    for value in resp.headers.getall("Set-Cookie", ()):
        name, _, rest = value.partition("=")
        out[name.strip()] = "secure" in (a.strip().lower() for a in rest.split(";")[1:])
    return out


def _cookie_header(resp: aiohttp.ClientResponse) -> str:
    """What a browser sends back: the cookies set with a value (kept by hand: some are Secure)."""
    pairs = (v.split(";", 1)[0] for v in resp.headers.getall("Set-Cookie", ()))
    return "; ".join(p for p in pairs if not p.endswith("=") and not p.endswith('=""'))


async def test_secure_cookies_follow_the_scheme_the_browser_used(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as direct:
        # --cookie-secure=false on plain http: not Secure (local development without TLS works).
        relaxed = await proxy_factory(reverse_proxy=True, cookie_secure=False, whitelist_domain=["localhost"])
        start = await direct.get(relaxed.make_url("/oauth2/start"), allow_redirects=False)
        assert _secure(start) and not any(_secure(start).values())
        # ... but behind a trusted ingress that terminated https, every cookie is Secure.
        start = await direct.get(
            relaxed.make_url("/oauth2/start"), headers=FORWARDED_HTTPS, allow_redirects=False
        )
        assert _secure(start) and all(_secure(start).values())
        callback = URL(await provider.login(browser, start.headers["Location"], login="alice"))
        assert str(callback).startswith("https://localhost/oauth2/callback?")
        done = await direct.get(
            relaxed.make_url("/oauth2/callback").with_query(callback.query),
            headers={**FORWARDED_HTTPS, "Cookie": _cookie_header(start)},
            allow_redirects=False,
        )
        assert done.status == 302, await done.text()
        session = {k: v for k, v in _secure(done).items() if k.startswith("_oidcproxy") and "csrf" not in k}
        assert session and all(session.values()) and all(_secure(done).values())

        # The same header from a peer outside --trusted-proxy-ip proves nothing.
        untrusted = await proxy_factory(
            reverse_proxy=True,
            cookie_secure=False,
            trusted_proxy_ip=["10.0.0.0/8"],
            whitelist_domain=["localhost"],
        )
        start = await direct.get(
            untrusted.make_url("/oauth2/start"), headers=FORWARDED_HTTPS, allow_redirects=False
        )
        assert _secure(start) and not any(_secure(start).values())

        # --cookie-secure=true (the default): Secure whatever the scheme.
        strict = await proxy_factory(cookie_secure=True)
        start = await direct.get(strict.make_url("/oauth2/start"), allow_redirects=False)
        assert _secure(start) and all(_secure(start).values())
