"""NGINX fixtures: a TLS certificate made here (trustme), the npm oidc-provider issuing ID tokens well
over 8 KB (hundreds of groups), the real proxy and an upstream on loopback, and NGINX in front.

Both topologies of deploy/: the sidecar (NGINX -> oidcproxy -> dashboard) and auth_request (NGINX asks
/oauth2/auth, then goes straight to the dashboard).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestServer

from oidcproxy.web.app import build_app
from tests.factories import make_settings
from tests.support.nginx import Nginx, big_header_upstream, nginx_binary, run_nginx
from tests.support.nodeidp import NodeIdP, start_node_idp

GROUPS = 600  # enough for an ID token over 8 KB and a session split over several cookies

# The documented lines: X-Forwarded-Proto for the callback URL, big header buffers for big tokens.
PROXY_HEADERS = """
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffer_size 128k;
            proxy_buffers 8 128k;
            proxy_busy_buffers_size 256k;
"""


def sidecar_server(proxy_port: int, *, forwarded_proto: bool = True) -> str:
    headers = (
        PROXY_HEADERS
        if forwarded_proto
        else PROXY_HEADERS.replace("proxy_set_header X-Forwarded-Proto $scheme;", "")
    )
    return f"""
        large_client_header_buffers 4 64k;
        location / {{
            proxy_pass http://127.0.0.1:{proxy_port};
{headers}
        }}
"""


def auth_request_server(proxy_port: int, app_port: int) -> str:
    return f"""
        large_client_header_buffers 4 64k;
        location /oauth2/ {{
            proxy_pass http://127.0.0.1:{proxy_port};
{PROXY_HEADERS}
        }}
        location = /oauth2/auth {{
            internal;
            proxy_pass http://127.0.0.1:{proxy_port};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
{PROXY_HEADERS}
        }}
        location / {{
            auth_request /oauth2/auth;
            error_page 401 = @signin;
            auth_request_set $auth_user $upstream_http_x_auth_request_user;
            auth_request_set $auth_email $upstream_http_x_auth_request_email;
            auth_request_set $auth_groups $upstream_http_x_auth_request_groups;
            auth_request_set $auth_header $upstream_http_authorization;
            auth_request_set $auth_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $auth_cookie;
            proxy_set_header X-Auth-Request-User $auth_user;
            proxy_set_header X-Auth-Request-Email $auth_email;
            proxy_set_header X-Auth-Request-Groups $auth_groups;
            proxy_set_header Authorization $auth_header;
            proxy_pass http://127.0.0.1:{app_port};
{PROXY_HEADERS}
        }}
        location @signin {{
            return 302 /oauth2/start?rd=$scheme://$http_host$request_uri;
        }}
"""


@dataclass
class Tls:
    cert: Path
    key: Path
    client: ssl.SSLContext


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
