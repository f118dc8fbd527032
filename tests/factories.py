"""Test factories: settings, an echo upstream, and a walk through the login flow by hand."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from oidcproxy.config import Settings

__all__ = ["COOKIE_SECRET", "echo_app", "make_settings", "walk_login"]

COOKIE_SECRET = "0123456789abcdef0123456789abcdef"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "upstream": ["http://127.0.0.1:9/"],
        "oidc_issuer_url": "http://127.0.0.1:9",
        "client_id": "oidcproxy",
        "client_secret": "oidcproxy-secret",
        "cookie_secret": COOKIE_SECRET,
        "cookie_secure": False,
        "email_domain": ["example.com"],
    }
    values.update(overrides)
    return Settings(**values)


def echo_app() -> web.Application:
    """An upstream that answers with what it was sent, and a few paths for streaming and WebSockets."""

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path,
                "headers": {k: v for k, v in request.headers.items()},
                "header_list": [[k, v] for k, v in request.headers.items()],
                "body_bytes": len(body),
            }
        )

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("bytes", "0"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        chunk = b"x" * 65536
        sent = 0
        while sent < size:
            part = chunk[: min(len(chunk), size - sent)]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.StreamResponse:
        total = 0
        async for chunk in request.content.iter_chunked(65536):
            total += len(chunk)
        return web.json_response({"received": total})

    async def ws(request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(protocols=("chat", "other"))
        await socket.prepare(request)
        await socket.send_str(json.dumps({"hello": dict(request.headers)}))
        async for msg in socket:
            if msg.type is aiohttp.WSMsgType.TEXT:
                if msg.data == "close":
                    await socket.close(code=4001, message=b"asked")
                else:
                    await socket.send_str("echo:" + msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await socket.send_bytes(msg.data[::-1])
        return socket

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_post("/upload", upload)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def walk_login(
    client: aiohttp.ClientSession,
    base: URL,
    path: str,
    provider_login: Any,
    *,
    login: str,
) -> aiohttp.ClientResponse:
    """Ask for `path` as a browser, follow sign-in, the provider and the callback; the last response."""
    html = {"Accept": "text/html"}
    first = await client.get(base.join(URL(path, encoded=True)), headers=html, allow_redirects=False)
    assert first.status == 302, await first.text()
    sign_in = URL(first.headers["Location"])
    assert sign_in.path == "/oauth2/sign_in"
    start = await client.get(
        base.join(URL("/oauth2/start")).with_query(rd=sign_in.query["rd"]), allow_redirects=False
    )
    assert start.status == 302, await start.text()
    callback = await provider_login(client, start.headers["Location"], login=login)
    done = await client.get(callback, headers=html, allow_redirects=False)
    if done.status != 302:
        return done
    location = URL(done.headers["Location"], encoded=True)
    return await client.get(base.join(location), headers=html, allow_redirects=False)
