"""The access log of the real command: one line per request, secrets in query strings never written."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
from yarl import URL

from oidcproxy.web.accesslog import redact_query
from tests.support.devidp import dev_login
from tests.support.process import stop


def test_redact_query_hides_only_secret_values() -> None:
    assert redact_query("") == ""
    assert redact_query("a=1&b=two") == "a=1&b=two"
    assert redact_query("code=abc&state=xyz&rd=%2Fx") == "code=REDACTED&state=REDACTED&rd=%2Fx"
    assert (
        redact_query("id_token_hint=t0k&Access_Token=t0k") == "id_token_hint=REDACTED&Access_Token=REDACTED"
    )


def start_dev(port: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "oidcproxy", "--dev", "--http-address", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and "listening" in process.stdout.readline()
    return process


async def test_each_request_is_logged_and_the_callback_code_is_not(unused_tcp_port: int) -> None:
    base = URL(f"http://127.0.0.1:{unused_tcp_port}")
    process = start_dev(unused_tcp_port)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            start = await browser.get(base / "oauth2/start" % {"rd": "/hello"}, allow_redirects=False)
            callback = await dev_login(browser, start.headers["Location"], email="ann@example.com")
            code = URL(callback).query["code"]
            assert (await browser.get(callback, allow_redirects=False)).status == 302
            assert (await browser.get(base / "hello" % {"q": "1"})).status == 200
    finally:
        err = stop(process)
    assert code not in err
    lines = [line for line in err.splitlines() if '" 302 ' in line or '" 200 ' in line]
    assert any(
        '"GET /oauth2/callback?code=REDACTED&state=REDACTED HTTP/1.1" 302' in line for line in lines
    ), err
    assert any('"GET /hello?q=1 HTTP/1.1" 200' in line for line in lines), err
