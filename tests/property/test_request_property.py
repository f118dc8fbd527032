"""Property: no request a client can send gets a 5xx from the proxy; only the upstream's own 502/504.

Random and mutated requests (methods, targets in every form, header names and values in any spelling,
cookies: a real session cookie, mutated copies, garbage) go over a raw socket to the real app, with the
embedded provider and a real upstream. The upstream marks its own answers, so a 502/504 it chose is
told apart from one the proxy made up.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from oidcproxy.web.app import build_app
from tests.factories import echo_app, make_settings, walk_login
from tests.support.devidp import dev_login
from tests.support.loop import Loop

MARK = "X-Upstream-Own"
METHODS = ("GET", "GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PRI")
PATHS = (
    "/",
    "/app/x",
    "/public/",
    "/public/../admin",
    "/public/%2e%2e/x",
    "//evil.example/x",
    "/oauth2/auth",
    "/oauth2/start",
    "/oauth2/callback",
    "/oauth2/sign_in",
    "/oauth2/sign_out",
    "/oauth2/userinfo",
    "/ping",
    "/ready",
    "/ws",
    "/status/502",
    "/status/504",
    "/dev-idp/authorize",
    "/dev-idp/token",
    "/dev-idp/.well-known/openid-configuration",
)
QUERY_KEYS = ("rd", "code", "state", "allowed_groups", "allowed_emails", "error", "x")
NAMES = (
    "Cookie",
    "Authorization",
    "Host",
    "Accept",
    "Origin",
    "Connection",
    "Upgrade",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "Forwarded",
    "X-Real-IP",
    "X-Request-Id",
    "Access-Control-Request-Method",
    "Content-Type",
    "Expect",
    "Range",
    "If-None-Match",
    "Accept-Encoding",
    "X_Forwarded_User",
    "x-forwarded_email",
    "X-Auth-Request-Email",
    "Te",
    "Keep-Alive",
)
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VALUE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
URL_CHARS = "abcXYZ019-._~%/?#[]@!$&'()*+,;=:\\\"<>^`{|} é"


def upstream_app() -> web.Application:
    app = echo_app()

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), headers={MARK: "1"})

    inner = web.Application()
    inner.router.add_route("*", "/{code:50[24]}", status)
    app.add_subapp("/status", inner)
    return app


@dataclass(slots=True)
class Target:
    port: int
    cookie: str  # a real session cookie header, `name=value` pairs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])


async def _start(port: int) -> tuple[list[web.AppRunner], str]:
    upstream, upstream_port = await _serve(upstream_app())
    settings = make_settings(
        oidc_type="embedded",
        http_address=f"127.0.0.1:{port}",
        upstream=[f"http://127.0.0.1:{upstream_port}/"],
        skip_auth_route=["^/public/"],
        skip_jwt_bearer_tokens=True,
        set_xauthrequest=True,
        pass_access_token=True,
        pass_authorization_header=True,
        reverse_proxy=True,
        whitelist_domain=[".example.com"],
        api_route=["^/api/"],
    )
    proxy, _ = await _serve(build_app(settings), port)

    async def login(session: aiohttp.ClientSession, url: str, *, login: str) -> str:
        return await dev_login(session, url, email="alice@example.com", groups="admins,dev")

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        done = await walk_login(browser, proxy_url(port), "/app", login, login="alice")
        assert done.status == 200, await done.text()
        cookie = "; ".join(f"{c.key}={c.value}" for c in browser.cookie_jar if c.key.startswith("_oidcproxy"))
    return [proxy, upstream], cookie


def proxy_url(port: int) -> Any:
    from yarl import URL

    return URL(f"http://127.0.0.1:{port}/")


@pytest.fixture(scope="module")
def target(loop: Loop) -> Iterator[Target]:
    port = _free_port()
    runners, cookie = loop.run(_start(port))
    yield Target(port, cookie)
    for runner in runners:
        loop.run(runner.cleanup())


@st.composite
def request_targets(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(PATHS)) + draw(st.text(alphabet=URL_CHARS, max_size=12))
    if draw(st.booleans()):
        pairs = draw(
            st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.text(URL_CHARS, max_size=20)), max_size=3)
        )
        path += "?" + "&".join(f"{k}={v}" for k, v in pairs)
    form = draw(st.sampled_from(["origin"] * 6 + ["absolute", "asterisk", "authority", "junk"]))
    if form == "absolute":
        return (
            draw(st.sampled_from(["http://", "https://", "ws://"]))
            + draw(st.sampled_from(["127.0.0.1", "other.host", "evil.example:8080", "[::1]:1"]))
            + path
        )
    if form == "asterisk":
        return "*"
    if form == "authority":
        return draw(st.sampled_from(["other.host:443", "127.0.0.1:9", "[::1]:80"]))
    if form == "junk":
        return draw(st.text(alphabet=URL_CHARS, min_size=1, max_size=20)).replace(" ", "")
    return path.replace(" ", "%20")


@st.composite
def cookies(draw: st.DrawFn, real: str) -> str:
    kind = draw(st.sampled_from(["real", "mutated", "chunks", "garbage", "none"]))
    if kind == "real":
        return real
    if kind == "mutated":
        chars = list(real)
        for _ in range(draw(st.integers(1, 3))):
            chars[draw(st.integers(0, len(chars) - 1))] = draw(st.sampled_from('Aa0-_=;, "é'))
        return "".join(chars)
    if kind == "chunks":
        value = real.split("=", 1)[1]
        cut = draw(st.integers(0, len(value)))
        return f"_oidcproxy_0={value[:cut]}; _oidcproxy_1={value[cut:]}"
    if kind == "garbage":
        names = st.sampled_from(["_oidcproxy", "_oidcproxy_0", "_oidcproxy_1", "_oidcproxy_csrf", "a"])
        pairs = draw(st.lists(st.tuples(names, st.text(VALUE_CHARS, max_size=40)), max_size=3))
        return "; ".join(f"{k}={v}" for k, v in pairs)
    return ""


@st.composite
def raw_requests(draw: st.DrawFn, real_cookie: str) -> bytes:
    method = draw(st.sampled_from(METHODS) | st.text(alphabet=TCHAR, min_size=1, max_size=8))
    lines = [f"{method} {draw(request_targets())} HTTP/1.1", "Host: 127.0.0.1"]
    cookie = draw(cookies(real_cookie))
    if cookie:
        lines.append(f"Cookie: {cookie}")
    names = st.sampled_from(NAMES) | st.text(alphabet=TCHAR, min_size=1, max_size=12)
    for name, value in draw(st.lists(st.tuples(names, st.text(VALUE_CHARS, max_size=60)), max_size=6)):
        lines.append(f"{name}: {value.strip()}")
    body = draw(st.binary(max_size=64)) if draw(st.booleans()) else b""
    if body and not any(line.lower().startswith(("content-length", "transfer-encoding")) for line in lines):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send the request and read the final answer's head (1xx skipped); b"" if none came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
            head = _final_head(data)
            if head is not None:
                return head
    return data


def _final_head(data: bytes) -> bytes | None:
    while b"\r\n\r\n" in data:
        head, _, data = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 1") or head.startswith(b"HTTP/1.1 101"):
            return head
    return None


def test_the_session_cookie_is_real(target: Target) -> None:
    head = exchange(target.port, f"GET /app HTTP/1.1\r\nHost: a\r\nCookie: {target.cookie}\r\n\r\n".encode())
    assert head.startswith(b"HTTP/1.1 200"), head


@given(data=st.data())
def test_no_request_gets_a_5xx_from_the_proxy(target: Target, data: st.DataObject) -> None:
    request = data.draw(raw_requests(target.cookie))
    head = exchange(target.port, request)
    if not head:
        return  # the server closed without answering (a broken request line): no 5xx either
    status = int(head.split(b" ", 2)[1])
    own = MARK.lower().encode() in head.lower()
    assert status < 500 or (status in (502, 504) and own), head.decode("latin-1")
