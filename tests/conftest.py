"""Shared fixtures: a real upstream, the real npm oidc-provider, and the real proxy on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from oidcproxy.web.app import build_app
from tests.factories import echo_app, make_settings
from tests.support.devidp import dev_login
from tests.support.nodeidp import (
    NodeIdP,
    ensure_node_modules,
    provider_login,
    provider_logout,
    start_node_idp,
)

# Real Redis (standalone, Sentinel, Cluster): redis_server, redis_factory, redis_sentinel, redis_cluster.
pytest_plugins = ["tests.support.redis_fixtures"]

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


class Provider:
    """Which provider a test signs in at, and how a person signs in there."""

    def __init__(self, kind: str, node: NodeIdP | None) -> None:
        self.kind = kind
        self.node = node

    def settings(self, port: int) -> dict[str, Any]:
        if self.node is not None:
            return {
                "oidc_issuer_url": self.node.issuer,
                "client_id": self.node.client_id,
                "client_secret": self.node.client_secret,
            }
        return {"oidc_type": "embedded", "http_address": f"127.0.0.1:{port}"}

    async def login(self, session: aiohttp.ClientSession, authorize_url: str, *, login: str) -> str:
        if self.node is not None:
            return await provider_login(session, authorize_url, login=login)
        user = USERS[login]
        return await dev_login(
            session,
            authorize_url,
            email=user["email"],
            name=user.get("name", ""),
            groups=",".join(user["groups"]),
        )

    async def logout(self, session: aiohttp.ClientSession, end_session_url: str) -> str:
        """Sign out at the provider's end_session_endpoint; answers its redirect, not followed."""
        if self.node is not None:
            return await provider_logout(session, end_session_url)
        async with session.get(end_session_url, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            return str(resp.headers["Location"])


@pytest.fixture(params=["node", "embedded"])
def provider(request: pytest.FixtureRequest) -> Provider:
    """The login-flow tests run against both: the npm oidc-provider and our embedded one."""
    if request.param == "node":
        return Provider("node", request.getfixturevalue("node_idp"))
    return Provider("embedded", None)


@pytest.fixture
def proxy_factory(
    aiohttp_server: Any, upstream: TestServer, provider: Provider, unused_tcp_port_factory: Any
) -> Any:
    async def make(**overrides: Any) -> TestServer:
        port = unused_tcp_port_factory()
        values: dict[str, Any] = {"upstream": [str(upstream.make_url("/"))], **provider.settings(port)}
        values.update(overrides)
        server: TestServer = await aiohttp_server(build_app(make_settings(**values)), port=port)
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
