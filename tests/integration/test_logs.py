"""Logs of the real command: --log-format json (one object a line, audit events, the request id that
went upstream), the text format's one timestamp style, and the paths left out of the request log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.web import build_app
from tests.factories import make_settings
from tests.support.devidp import dev_login
from tests.support.process import stop

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def start(port: int, *flags: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "oidcproxy", "--dev", "--http-address", f"127.0.0.1:{port}", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and "listening" in process.stdout.readline()
    return process


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def sign_in(browser: aiohttp.ClientSession, base: URL, email: str) -> str:
    """Sign in; answers the authorization code the callback carried (it must never be logged)."""
    first = await browser.get(base / "oauth2/start" % {"rd": "/hello"}, allow_redirects=False)
    callback = await dev_login(browser, first.headers["Location"], email=email)
    assert (await browser.get(callback, allow_redirects=False)).status == 302
    return URL(callback).query["code"]


async def test_json_lines_carry_request_fields_and_audit_events(
    unused_tcp_port: int, upstream: TestServer, browser: aiohttp.ClientSession
) -> None:
    base = URL(f"http://127.0.0.1:{unused_tcp_port}")
    upstream_url = str(upstream.make_url("/"))
    process = start(
        unused_tcp_port,
        "--log-format=json",
        f"--upstream={upstream_url}",
        "--skip-jwt-bearer-tokens",
        "--silence-ping-logging",
        "--exclude-logging-path=/healthz",
    )
    try:
        code = await sign_in(browser, base, "ann@example.com")
        agent = {"User-Agent": 'curl/8 "quoted"', "X-Request-Id": "client-chosen-id"}
        async with browser.get(base / "hello" % {"q": "1", "token": "t0psecret"}, headers=agent) as hello:
            seen = await hello.json()
        for path in ("/ping", "/ready", "/healthz"):
            await (await browser.get(base.with_path(path))).read()
        assert (await browser.get(base / "oauth2/auth" % {"allowed_groups": "admins"})).status == 403
        async with aiohttp.ClientSession() as cli:
            forged = jwt.encode({"iss": "https://evil.test", "sub": "x"}, "k" * 32, algorithm="HS256")
            bearer = await cli.get(base / "api", headers={"Authorization": f"Bearer {forged}"})
            assert bearer.status == 401
            failed = await cli.get(base / "oauth2/callback" % {"code": "c0de", "state": "st8"})
            assert failed.status == 400
        await (await browser.get(base / "oauth2/sign_out")).read()
    finally:
        err = stop(process)
    assert code not in err and "t0psecret" not in err and "c0de" not in err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line one object
    assert all(RFC3339_UTC.fullmatch(line["time"]) and line["level"] and line["logger"] for line in lines)

    access = [line for line in lines if line["logger"] == "oidcproxy.access"]
    assert not [a for a in access if a["path"].split("?")[0] in ("/ping", "/ready", "/healthz")]
    (hello_line,) = [a for a in access if a["path"].startswith("/hello")]
    sent_up = [v for k, v in seen["header_list"] if k.lower() == "x-request-id"]
    (rid,) = sent_up  # what the upstream got: ours, not the client's
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    assert hello_line == {
        "time": hello_line["time"],
        "level": "info",
        "logger": "oidcproxy.access",
        "msg": "GET /hello?q=1&token=REDACTED 200",
        "request_id": rid,
        "user": "ann@example.com",
        "email": "ann@example.com",
        "method": "GET",
        "host": f"127.0.0.1:{unused_tcp_port}",
        "path": "/hello?q=1&token=REDACTED",
        "status": 200,
        "duration_ms": hello_line["duration_ms"],
        "bytes": hello_line["bytes"],
        "upstream": upstream_url.rstrip("/"),
        "user_agent": 'curl/8 "quoted"',
        "client": "127.0.0.1",
    }
    events = {line["event"]: line for line in lines if line["logger"] == "oidcproxy.audit"}
    assert list(events) == ["sign_in", "denied", "bearer_refused", "sign_in_failed", "sign_out"]
    assert events["sign_in"]["email"] == events["sign_out"]["email"] == "ann@example.com"
    assert events["denied"]["reason"] == "allowed_groups/allowed_emails of the query"
    assert "issuer not accepted here: 'https://evil.test'" in events["bearer_refused"]["reason"]
    assert "no login cookie" in events["sign_in_failed"]["reason"]
    assert all(e["request_id"] and e["client"] == "127.0.0.1" for e in events.values())


async def test_text_lines_share_one_timestamp_style_and_audit_is_one_line(
    unused_tcp_port: int, browser: aiohttp.ClientSession
) -> None:
    base = URL(f"http://127.0.0.1:{unused_tcp_port}")
    process = start(unused_tcp_port)
    try:
        await sign_in(browser, base, "bo@example.com")
        assert (await browser.get(base / "hello")).status == 200
    finally:
        err = stop(process)
    lines = [line for line in err.splitlines() if RFC3339_UTC.match(line)]
    access = [line for line in lines if " INFO oidcproxy.access: " in line]
    audit = [line for line in lines if " INFO oidcproxy.audit: " in line]
    assert any('"GET /hello HTTP/1.1" 200' in line and "user=bo@example.com" in line for line in access)
    (signed_in,) = audit
    assert "signed in event=sign_in request_id=" in signed_in and "email=bo@example.com" in signed_in
    app_log = [line for line in lines if " oidcproxy.idp: " in line]  # the app log, same stamp
    assert app_log, err


async def test_request_id_of_a_trusted_proxy_is_kept_anyone_elses_replaced(
    aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any
) -> None:
    async def upstream_saw(reverse_proxy: bool, sent: str) -> str:
        port = unused_tcp_port_factory()
        settings = make_settings(
            upstream=[str(upstream.make_url("/"))],
            oidc_type="embedded",
            http_address=f"127.0.0.1:{port}",
            skip_auth_route=["^/open$"],
            reverse_proxy=reverse_proxy,  # loopback is in the default --trusted-proxy-ip
        )
        proxy = await aiohttp_server(build_app(settings), port=port)
        async with (
            aiohttp.ClientSession() as cli,
            cli.get(proxy.make_url("/open"), headers={"x-request-id": sent}) as resp,
        ):
            seen = await resp.json()
        (rid,) = [v for k, v in seen["header_list"] if k.lower() == "x-request-id"]
        return str(rid)

    assert await upstream_saw(True, "ingress-7f3a") == "ingress-7f3a"  # NGINX ingress's $req_id
    assert re.fullmatch(r"[0-9a-f]{16}", await upstream_saw(True, "not an id; DROP TABLE"))
    assert re.fullmatch(r"[0-9a-f]{16}", await upstream_saw(False, "client-chosen"))
