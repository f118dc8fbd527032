"""TLS at oidcproxy: the real program (`python -m oidcproxy`) serving --https-address next to
--http-address, its certificate files replaced while it runs, and sign-in over HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.factories import COOKIE_SECRET, echo_app
from tests.support.devidp import dev_login
from tests.support.nginx import free_port

_BOUND_S = 20.0


def _issue(ca: trustme.CA, where: Path) -> tuple[Path, Path]:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = where / "tls.crt", where / "tls.key"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def _trusting(*cas: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca in cas:
        ca.configure_trust(context)
    return context


@contextlib.contextmanager
def _oidcproxy(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    command = [sys.executable, "-m", "oidcproxy", "--cookie-secret", COOKIE_SECRET, "--cookie-secure=false",
               "--email-domain", "example.com", "--request-logging=false", *args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline()
    finally:
        process.terminate()
        try:
            process.communicate(timeout=_BOUND_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=_BOUND_S)


def _served_certificate(port: int) -> bytes:
    """The leaf a new connection is shown, fetched without verifying it."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert der is not None
    return der


async def test_replaced_certificate_is_served_to_new_connections_while_an_open_websocket_stays_up(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    upstream: TestServer = await aiohttp_server(echo_app())
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert, key = _issue(old_ca, tmp_path)
    http_port, https_port = free_port(), free_port()
    with _oidcproxy(
        "--workers", "2", "--http-address", f"127.0.0.1:{http_port}",
        "--https-address", f"127.0.0.1:{https_port}",
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--upstream", str(upstream.make_url("/")), "--skip-auth-route", "^/",
        "--oidc-issuer-url", "http://127.0.0.1:9", "--client-id", "c", "--client-secret", "s",
    ) as (_, line):  # fmt: skip
        assert f"listening on 127.0.0.1:{http_port} and https on 127.0.0.1:{https_port}" in line, line
        old_der = _served_certificate(https_port)
        connector = aiohttp.TCPConnector(ssl=_trusting(old_ca, new_ca), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as browser:
            plain = await browser.get(f"http://127.0.0.1:{http_port}/over-http")
            assert plain.status == 200  # both listeners at once
            async with browser.ws_connect(f"wss://127.0.0.1:{https_port}/ws") as ws:
                await ws.receive_json()
                await ws.send_str("before")
                assert await ws.receive_str() == "echo:before"

                # cert-manager's way: new files swapped in under the same names
                staged = tmp_path / "staged"
                staged.mkdir()
                new_cert, new_key = _issue(new_ca, staged)
                os.replace(new_key, key)
                os.replace(new_cert, cert)
                await _until_every_worker_serves_a_new_certificate(https_port, old_der)

                await ws.send_str("after")
                assert await ws.receive_str() == "echo:after"  # the socket opened before stayed up
            strict = aiohttp.TCPConnector(ssl=_trusting(new_ca))
            async with aiohttp.ClientSession(connector=strict) as fresh:
                response = await fresh.get(f"https://127.0.0.1:{https_port}/after")
                assert response.status == 200  # verified against the new CA only


async def _until_every_worker_serves_a_new_certificate(port: int, old: bytes) -> None:
    """Polls: each worker reloads on its own poll; eight new connections in a row must see the new one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    in_a_row = 0
    while in_a_row < 8:
        assert loop.time() < deadline, "the new certificate was not served"
        in_a_row = in_a_row + 1 if await asyncio.to_thread(_served_certificate, port) != old else 0
        if not in_a_row:
            await asyncio.sleep(0.2)


async def test_sign_in_over_https_sets_secure_cookies_without_cookie_secure(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = _issue(ca, tmp_path)
    http_port, https_port = free_port(), free_port()
    with _oidcproxy(
        "--oidc-type", "embedded", "--upstream", "builtin:whoami",
        "--http-address", f"127.0.0.1:{http_port}", "--https-address", f"127.0.0.1:{https_port}",
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-min-version", "TLS1.3",
    ) as (_, line):  # fmt: skip
        assert "https on" in line, line
        connector = aiohttp.TCPConnector(ssl=_trusting(ca))
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as browser:
            base = URL(f"https://127.0.0.1:{https_port}")
            start = await browser.get(base / "oauth2/start", params={"rd": "/whoami"}, allow_redirects=False)
            assert start.status == 302, await start.text()
            authorize = start.headers["Location"]
            assert URL(authorize).query["redirect_uri"] == str(base / "oauth2/callback")
            callback = await dev_login(browser, authorize, email="alice@example.com")
            done = await browser.get(callback, allow_redirects=False)
            assert done.status == 302, await done.text()
            assert all("Secure" in v for v in done.headers.getall("Set-Cookie"))
            page = await browser.get(base / "whoami", headers={"Accept": "application/json"})
            assert page.status == 200
            assert "alice@example.com" in await page.text()
        old_tls = ssl.create_default_context()
        ca.configure_trust(old_tls)
        old_tls.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            with socket.create_connection(("127.0.0.1", https_port), timeout=5) as raw:
                old_tls.wrap_socket(raw, server_hostname="127.0.0.1").close()
