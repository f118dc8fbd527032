"""NGINX fixtures: a TLS certificate made here (trustme), the npm oidc-provider issuing ID tokens well
over 8 KB (hundreds of groups), the real proxy and an upstream on loopback, and NGINX in front.

Both topologies of deploy/: the sidecar (NGINX -> oidcproxy -> dashboard) and auth_request (NGINX asks
/oauth2/auth, then goes straight to the dashboard).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestServer

from oidcproxy.web.app import build_app
from tests.factories import make_settings
from tests.support.nginx import Nginx, Tls, big_header_upstream, nginx_binary, run_nginx
from tests.support.nodeidp import NodeIdP, start_node_idp

GROUPS = 600  # enough for an ID token over 8 KB and a session split over several cookies


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    nginx_binary()  # fail early and clearly when nginx is missing
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(cert, key, client)


@pytest.fixture(scope="session")
def big_idp() -> Iterator[NodeIdP]:
    users = {"alice": {"email": "alice@example.com", "email_verified": True, "groups": ["admins"]}}
    with start_node_idp(users=users, extra_groups=GROUPS, skip_consent=True) as idp:
        yield idp


@pytest.fixture
async def app_upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(big_header_upstream())
    return server


@pytest.fixture
def oidcproxy(aiohttp_server: Any, app_upstream: TestServer, big_idp: NodeIdP) -> Any:
    async def make(**overrides: Any) -> TestServer:
        values: dict[str, Any] = {
            "upstream": [str(app_upstream.make_url("/"))],
            "oidc_issuer_url": big_idp.issuer,
            "client_id": big_idp.client_id,
            "client_secret": big_idp.client_secret,
            "cookie_secure": True,
            "reverse_proxy": True,
            "pass_authorization_header": True,
            **overrides,
        }
        server: TestServer = await aiohttp_server(build_app(make_settings(**values)))
        return server

    return make


@pytest.fixture
def nginx(tmp_path: Path, tls: Tls) -> Iterator[Callable[[str], Nginx]]:
    """nginx(server_block) starts one NGINX; every one started is stopped at teardown."""
    with_stack: list[Any] = []

    def start(server: str) -> Nginx:
        prefix = tmp_path / f"nginx{len(with_stack)}"
        ctx = run_nginx(prefix, server, tls.cert, tls.key)
        instance = ctx.__enter__()
        with_stack.append(ctx)
        return instance

    yield start
    for ctx in reversed(with_stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
async def browser_tls(tls: Tls) -> AsyncIterator[aiohttp.ClientSession]:
    """A browser that trusts the test CA and keeps cookies for localhost and 127.0.0.1."""
    connector = aiohttp.TCPConnector(ssl=tls.client)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        yield session
