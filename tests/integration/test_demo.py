"""The demo upstream over a real socket: the whoami page, its JSON form and the WebSocket echo."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from oidcproxy.web.demo import build_demo_app


def fake_jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


IDENTITY = {
    "X-Forwarded-User": "a1b2",
    "X-Forwarded-Email": "alice@example.com",
    "X-Forwarded-Preferred-Username": "alice",
    "X-Forwarded-Groups": "admins,devs",
}


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(build_demo_app())


async def test_page_shows_identity_headers_and_claims(client: Any) -> None:
    token = fake_jwt({"sub": "a1b2", "name": "<b>Alice</b>"})
    headers = {**IDENTITY, "Authorization": f"Bearer {token}", "Accept": "text/html"}
    response = await client.get("/some/path?x=1&y=%3Cz%3E", headers=headers)
    assert response.status == 200
    page = await response.text()
    assert '<html lang="en">' in page
    for value in ("alice@example.com", "X-Forwarded-Groups", "admins, devs", "a1b2"):
        assert value in page
    assert "&lt;b&gt;Alice&lt;/b&gt;" in page and "<b>Alice</b>" not in page
    assert "not verified by this demo" in page
    assert "/some/path?x=1&amp;y=%3Cz%3E" in page
    assert f"{len('Bearer ' + token)} bytes" in page
    assert "/demo-ws" in page


async def test_json_variant(client: Any) -> None:
    token = fake_jwt({"sub": "a1b2", "groups": ["admins"]})
    headers = {
        **IDENTITY,
        "X-Forwarded-Access-Token": "opaque-secret",
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
    }
    body = await (await client.get("/x?q=1", headers=headers)).json()
    assert body["path"] == "/x?q=1"
    assert body["user"] == "a1b2"
    assert body["email"] == "alice@example.com"
    assert body["groups"] == ["admins", "devs"]
    assert body["headers"]["X-Forwarded-Email"] == "alice@example.com"
    assert "opaque-secret" not in json.dumps(body)
    assert body["authorization_bytes"] == len(f"Bearer {token}")
    assert body["claims"] == {"sub": "a1b2", "groups": ["admins"]}


async def test_no_token_no_claims(client: Any) -> None:
    body = await (await client.get("/", headers={"Accept": "application/json"})).json()
    assert body["claims"] is None
    assert body["authorization_bytes"] == 0
    assert body["headers"] == {}


async def test_websocket_echo(client: Any) -> None:
    async with client.ws_connect("/demo-ws") as ws:
        await ws.send_str("hello")
        assert await ws.receive_str() == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes() == b"\x00\x01"


async def test_plain_get_on_the_websocket_path(client: Any) -> None:
    assert (await client.get("/demo-ws")).status == 426


async def test_a_real_client_session_reaches_it(aiohttp_server: Any) -> None:
    server = await aiohttp_server(build_demo_app())
    async with aiohttp.ClientSession() as http, http.ws_connect(server.make_url("/demo-ws")) as ws:
        await ws.send_str("over loopback")
        assert await ws.receive_str() == "over loopback"
