"""Shared fixtures: a real upstream, the real npm oidc-provider, and the real proxy on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from oidcproxy.server import build_app
from tests.factories import echo_app, make_settings
from tests.support.nodeidp import NodeIdP, ensure_node_modules, start_node_idp

USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "groups": ["admins", "dev"],
    },
    "mallory": {"email": "mallory@evil.org", "email_verified": True, "groups": []},
    "eve": {"email": "eve@example.com", "email_verified": False, "groups": []},
}


@pytest.fixture(scope="session")
def node_idp() -> Iterator[NodeIdP]:
    ensure_node_modules()
    with start_node_idp(users=USERS, skip_consent=False) as idp:
        yield idp


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(echo_app())
    return server


@pytest.fixture
def proxy_factory(aiohttp_server: Any, upstream: TestServer, node_idp: NodeIdP) -> Any:
    async def make(**overrides: Any) -> TestServer:
        values: dict[str, Any] = {
            "upstream": [str(upstream.make_url("/"))],
            "oidc_issuer_url": node_idp.issuer,
            "client_id": node_idp.client_id,
            "client_secret": node_idp.client_secret,
        }
        values.update(overrides)
        server: TestServer = await aiohttp_server(build_app(make_settings(**values)))
        return server

    return make


@pytest.fixture
async def proxy(proxy_factory: Any) -> TestServer:
    server: TestServer = await proxy_factory()
    return server


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session
