"""`oidcproxy --dev` as a new user runs it: the real command, signed in over HTTP, whoami and WebSocket."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest
from yarl import URL

from tests.support.devidp import dev_login
from tests.support.process import stop


@pytest.fixture
def dev_proxy(unused_tcp_port: int) -> Iterator[str]:
    base = f"http://127.0.0.1:{unused_tcp_port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "oidcproxy", "--dev", "--http-address", f"127.0.0.1:{unused_tcp_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("oidcproxy listening on"), lines
        assert lines[1].strip() == f"Open {base}/ and sign in with any email and password."
        yield base
    finally:
        err = stop(process)
    assert "DEVELOPMENT OPENID PROVIDER - NOT FOR PRODUCTION" in err


async def test_dev_mode_sign_in_shows_whoami_and_websocket_echo(dev_proxy: str) -> None:
    base = URL(dev_proxy)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        first = await browser.get(base / "hello", headers={"Accept": "text/html"}, allow_redirects=False)
        assert first.status == 302
        start = await browser.get(base.join(URL(first.headers["Location"])), allow_redirects=False)
        page = await start.text()
        assert "Sign in with the development provider" in page
        start = await browser.get(base / "oauth2/start" % {"rd": "/hello"}, allow_redirects=False)
        authorize = start.headers["Location"]
        assert authorize.startswith(f"{dev_proxy}/dev-idp/authorize?")
        back = await dev_login(browser, authorize, email="dora@example.com", name="Dora", groups="ops,dev")
        done = await browser.get(back, allow_redirects=False)
        assert done.status == 302 and done.headers["Location"] == "/hello"
        whoami = await browser.get(base / "hello", headers={"Accept": "text/html"})
        html = await whoami.text()
        assert whoami.status == 200
        assert "dora@example.com" in html
        as_json = await (await browser.get(base / "hello", headers={"Accept": "application/json"})).json()
        assert as_json["email"] == "dora@example.com"
        assert as_json["groups"] == ["ops", "dev"]
        async with browser.ws_connect(base / "demo-ws") as ws:
            await ws.send_str("through the proxy")
            assert "through the proxy" in await ws.receive_str()


def test_embedded_provider_refuses_non_loopback_address() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oidcproxy", "--dev", "--http-address", "0.0.0.0:4180"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("oidcproxy: --http-address: 0.0.0.0:4180 is not a loopback address")
    assert "--dev-idp-allow-remote" in lines[0]
