"""HTTPS upstreams: a real NGINX serves TLS with a certificate from a test CA (trustme) the system
store does not know, in front of an echo app. Plain requests (our client) and WebSockets (aiohttp's
ws_connect) go through the one context built from --upstream-ca-file, --upstream-client-cert-file
and --ssl-upstream-insecure-skip-verify."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestServer

from oidcproxy.web.app import build_app
from tests.factories import make_settings
from tests.support.nginx import Nginx, big_header_upstream, run_nginx

pytestmark = pytest.mark.nginx

PASS_TO_APP = """
        location / {{
            proxy_pass http://127.0.0.1:{port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Client-Verify $ssl_client_verify;
            proxy_set_header X-Client-Subject $ssl_client_s_dn;
        }}
"""
REQUIRE_CLIENT_CERT = """
        ssl_client_certificate {ca};
        ssl_verify_client on;
"""


@dataclass
class Pki:
    """A private CA (the cluster's), the upstream's server certificate and our client certificate."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    where = tmp_path_factory.mktemp("upstream-pki")
    ca = trustme.CA(organization_name="cluster-internal CA")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("oidcproxy.example.com", common_name="oidcproxy")
    paths = Pki(*(where / n for n in ("ca.pem", "cert.pem", "key.pem", "client.pem", "client-key.pem")))
    ca.cert_pem.write_to_path(str(paths.ca))
    server.private_key_and_cert_chain_pem.write_to_path(str(paths.cert))
    server.private_key_pem.write_to_path(str(paths.key))
    client.cert_chain_pems[0].write_to_path(str(paths.client_cert))
    client.private_key_pem.write_to_path(str(paths.client_key))
    return paths


@pytest.fixture
async def app(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(big_header_upstream())
    return server


@pytest.fixture
def https_upstream(tmp_path: Path, pki: Pki, app: TestServer) -> Iterator[Callable[..., Nginx]]:
    """https_upstream(mtls=False): NGINX serving the echo app over TLS, optionally asking for our cert."""
    started: list[Any] = []

    def start(*, mtls: bool = False) -> Nginx:
        body = PASS_TO_APP.format(port=app.port)
        if mtls:
            body = REQUIRE_CLIENT_CERT.format(ca=pki.ca) + body
        ctx = run_nginx(tmp_path / f"nginx{len(started)}", body, pki.cert, pki.key)
        started.append(ctx)
        return ctx.__enter__()

    yield start
    for ctx in reversed(started):
        ctx.__exit__(None, None, None)


@pytest.fixture
def proxy_to(aiohttp_server: Any) -> Callable[..., Any]:
    async def make(edge: Nginx, **overrides: Any) -> TestServer:
        settings = make_settings(
            upstream=[f"https://127.0.0.1:{edge.port}/"], skip_auth_route=["^/"], **overrides
        )
        server: TestServer = await aiohttp_server(build_app(settings))
        return server

    return make


async def _get_and_websocket(proxy: TestServer) -> tuple[aiohttp.ClientResponse, str, dict[str, Any]]:
    """A plain GET and a WebSocket through the proxy: (GET answer, its text, the socket's hello)."""
    async with aiohttp.ClientSession() as browser:
        response = await browser.get(proxy.make_url("/page?x=1"), headers={"Accept": "text/html"})
        text = await response.text()
        async with browser.ws_connect(proxy.make_url("/ws")) as ws:
            hello: dict[str, Any] = (await ws.receive_json())["hello"]
            await ws.send_str("over-tls")
            assert await ws.receive_str() == "echo:over-tls"
        return response, text, hello


async def test_upstream_ca_file_trusts_a_private_ca(
    https_upstream: Callable[..., Nginx], proxy_to: Callable[..., Any], pki: Pki
) -> None:
    proxy = await proxy_to(https_upstream(), upstream_ca_file=[str(pki.ca)])
    response, text, _ = await _get_and_websocket(proxy)
    assert response.status == 200, text
    assert '"path": "/page?x=1"' in text


async def test_without_the_ca_file_a_clear_502_page_and_a_log_line(
    https_upstream: Callable[..., Nginx], proxy_to: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await proxy_to(https_upstream())
    async with aiohttp.ClientSession() as browser:
        with caplog.at_level(logging.WARNING, logger="oidcproxy"):
            page = await browser.get(proxy.make_url("/page"), headers={"Accept": "text/html"})
            text = await page.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await browser.ws_connect(proxy.make_url("/ws"))
    assert page.status == 502
    assert "could not be reached securely" in text
    assert refused.value.status == 502
    logged = [r.getMessage() for r in caplog.records if "not trusted" in r.getMessage()]
    assert len(logged) == 2, [r.getMessage() for r in caplog.records]  # one per request, HTTP and WS
    assert all("--upstream-ca-file" in line and "unable to get local issuer" in line for line in logged)


async def test_skip_verify_accepts_the_unknown_ca_and_warns_at_start(
    https_upstream: Callable[..., Nginx], proxy_to: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="oidcproxy"):
        proxy = await proxy_to(https_upstream(), ssl_upstream_insecure_skip_verify=True)
    assert any("NOT verified" in r.getMessage() for r in caplog.records)
    response, text, _ = await _get_and_websocket(proxy)
    assert response.status == 200, text


async def test_mtls_upstream_sees_our_client_certificate(
    https_upstream: Callable[..., Nginx], proxy_to: Callable[..., Any], pki: Pki
) -> None:
    edge = https_upstream(mtls=True)
    proxy = await proxy_to(
        edge,
        upstream_ca_file=[str(pki.ca)],
        upstream_client_cert_file=str(pki.client_cert),
        upstream_client_key_file=str(pki.client_key),
    )
    response, text, hello = await _get_and_websocket(proxy)
    assert response.status == 200, text
    assert '"X-Client-Verify": "SUCCESS"' in text
    assert "CN=oidcproxy" in hello["X-Client-Subject"]


async def test_mtls_upstream_refuses_us_without_a_client_certificate(
    https_upstream: Callable[..., Nginx], proxy_to: Callable[..., Any], pki: Pki
) -> None:
    proxy = await proxy_to(https_upstream(mtls=True), upstream_ca_file=[str(pki.ca)])
    async with aiohttp.ClientSession() as browser:
        response = await browser.get(proxy.make_url("/page"))
        text = await response.text()
    assert response.status == 400  # NGINX's own answer, relayed
    assert "No required SSL certificate was sent" in text
