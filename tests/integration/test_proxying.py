"""Streaming, WebSockets and upstream failures through the real proxy, signed in at the real provider."""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.factories import walk_login

HTML = {"Accept": "text/html"}


async def signed_in(proxy: TestServer, browser: aiohttp.ClientSession, provider: Any) -> None:
    final = await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    assert final.status == 200


async def test_large_download_streams(proxy: TestServer, browser: Any, provider: Any) -> None:
    await signed_in(proxy, browser, provider)
    size = 64 * 1024 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    resp = await browser.get(proxy.make_url("/big").with_query(bytes=size))
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(size)
    total = 0
    async for chunk in resp.content.iter_chunked(1 << 20):
        total += len(chunk)
    assert total == size
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 32 * 1024, f"peak memory grew {grown_kib} KiB for a {size >> 20} MiB body"


async def test_large_upload_streams(proxy: TestServer, browser: Any, provider: Any) -> None:
    await signed_in(proxy, browser, provider)
    size = 32 * 1024 * 1024

    async def body() -> Any:
        block = os.urandom(1 << 20)
        for _ in range(size >> 20):
            yield block

    resp = await browser.post(proxy.make_url("/upload"), data=body())
    assert resp.status == 200
    assert (await resp.json()) == {"received": size}


async def test_websocket_passes_identity_and_messages(proxy: TestServer, browser: Any, provider: Any) -> None:
    await signed_in(proxy, browser, provider)
    async with browser.ws_connect(proxy.make_url("/ws"), protocols=("chat",)) as ws:
        assert ws.protocol == "chat"
        hello = await ws.receive_json()
        assert hello["hello"]["X-Forwarded-Email"] == "alice@example.com"
        await ws.send_str("hi")
        assert (await ws.receive_str()) == "echo:hi"
        await ws.send_bytes(b"abc")
        assert (await ws.receive_bytes()) == b"cba"
        await ws.send_str("close")
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4001


async def test_websocket_without_session_refused(proxy: TestServer) -> None:
    async with aiohttp.ClientSession() as anon:
        try:
            await anon.ws_connect(proxy.make_url("/ws"))
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
        else:
            raise AssertionError("websocket opened without a session")


async def test_upstream_down_gives_502_page(
    proxy_factory: Any, browser: Any, unused_tcp_port: int, provider: Any
) -> None:
    proxy = await proxy_factory(upstream=[f"http://127.0.0.1:{unused_tcp_port}/"])
    await signed_in_anyway(proxy, browser, provider)
    resp = await browser.get(proxy.make_url("/x"), headers=HTML)
    assert resp.status == 502
    text = await resp.text()
    assert "could not be reached" in text
    assert "Traceback" not in text and "ClientConnectorError" not in text


async def signed_in_anyway(proxy: TestServer, browser: aiohttp.ClientSession, provider: Any) -> None:
    final = await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    assert final.status == 502


async def test_slow_upstream_gives_504(
    proxy_factory: Any, aiohttp_server: Any, browser: Any, provider: Any
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/{tail:.*}", slow)
    server = await aiohttp_server(app)
    proxy = await proxy_factory(upstream=[str(server.make_url("/"))], upstream_timeout="0.3s")
    start = await browser.get(proxy.make_url("/oauth2/start"), allow_redirects=False)
    callback = await provider.login(browser, start.headers["Location"], login="alice")
    assert (await browser.get(callback, allow_redirects=False)).status == 302
    resp = await browser.get(proxy.make_url("/x"), headers={"Accept": "application/json"})
    assert resp.status == 504
    assert (await resp.json())["status"] == 504


async def test_path_prefix_routes(
    proxy_factory: Any, aiohttp_server: Any, upstream: TestServer, browser: Any, provider: Any
) -> None:
    async def other(request: web.Request) -> web.Response:
        return web.json_response({"other": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", other)
    second = await aiohttp_server(app)
    proxy = await proxy_factory(upstream=[str(upstream.make_url("/")), str(second.make_url("/api/"))])
    await signed_in(proxy, browser, provider)
    assert (await (await browser.get(proxy.make_url("/api/v1"))).json()) == {"other": "/api/v1"}
    assert (await (await browser.get(proxy.make_url("/apix"))).json())["path"] == "/apix"
