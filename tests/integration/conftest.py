"""Fixtures shared by the integration tests: providers started per test, proxies in front of them, a
browser-like client session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from oidcproxy.model import system_clock
from oidcproxy.web.app import build_app
from tests.factories import make_settings
from tests.support.nodeidp import NodeIdP, start_node_idp
from tests.support.oidcflow import USERS


@pytest.fixture
def node() -> Iterator[Callable[..., NodeIdP]]:
    """Start providers with the configuration a test needs; all are stopped afterwards."""
    started: list[NodeIdP] = []

    def start(**config: Any) -> NodeIdP:
        idp = start_node_idp(**{"users": USERS, "skip_consent": True, **config})
        started.append(idp)
        return idp

    yield start
    for idp in started:
        idp.close()


@pytest.fixture
def make_proxy(aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any) -> Any:
    async def make(idp: NodeIdP, clock: Any = system_clock, **overrides: Any) -> TestServer:
        values: dict[str, Any] = {
            "upstream": [str(upstream.make_url("/"))],
            "oidc_issuer_url": idp.issuer,
            "client_id": idp.client_id,
            "client_secret": idp.client_secret,
            **overrides,
        }
        port = unused_tcp_port_factory()
        server: TestServer = await aiohttp_server(build_app(make_settings(**values), clock), port=port)
        return server

    return make


@pytest.fixture
async def browser() -> Any:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session
