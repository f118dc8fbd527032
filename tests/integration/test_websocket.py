"""The WebSocket pump through the real proxy: pings, close codes, subprotocols, big bearer headers on the
upgrade, the Origin check, timeouts, and 1008 when the session behind the socket expires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web.app import build_app
from oidcproxy.web.appkeys import PROXY
from tests.factories import make_settings, walk_login
from tests.support.nginx import CLOSED, big_header_upstream

pytestmark = pytest.mark.parametrize("provider", ["node"], indirect=True)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(big_header_upstream())
    return server


async def _signed_in(proxy: TestServer, browser: aiohttp.ClientSession, provider: Any) -> None:
    final = await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    assert final.status == 200


async def test_pings_messages_and_close_codes_pass_both_ways(
    proxy: TestServer, upstream: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    await _signed_in(proxy, browser, provider)
    bearer = "Bearer " + "b" * 40_000
    async with browser.ws_connect(
        proxy.make_url("/ws"), autoping=False, protocols=("graphql-ws",), headers={"Authorization": bearer}
    ) as ws:
        assert ws.protocol == "graphql-ws"
        hello = (await ws.receive_json())["hello"]
        assert hello["Authorization"] == bearer
        assert hello["X-Forwarded-Email"] == "alice@example.com"
        await ws.ping(b"p1")
        pong = await ws.receive()
        assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"p1")
        assert await ws.receive_str() == "saw-ping:p1"
        await ws.send_str("ping-me")
        ping = await ws.receive()
        assert (ping.type, ping.data) == (aiohttp.WSMsgType.PING, b"from-upstream")
        await ws.pong(b"back")
        assert await ws.receive_str() == "saw-pong:back"
        await ws.send_bytes(b"\x00\x01\x02")
        assert await ws.receive_bytes() == b"\x02\x01\x00"
        await ws.send_str("close:4001:asked")
        closing = await ws.receive()
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert (closing.data, closing.extra) == (4001, "asked")
    # The upstream began that close; what it sees is the reply to it (aiohttp's client answers 1000).
    assert await asyncio.wait_for(upstream.app[CLOSED].get(), 10) in (1000, 4001)

    async with browser.ws_connect(proxy.make_url("/ws")) as ws:
        assert ws.protocol is None
        await ws.receive_json()
        await ws.close(code=4002, message=b"bye")
    assert await asyncio.wait_for(upstream.app[CLOSED].get(), 10) == 4002


async def test_cookie_websocket_from_foreign_origin_refused(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    proxy = await proxy_factory(whitelist_domain=[".example.com"])
    await _signed_in(proxy, browser, provider)
    own = str(proxy.make_url("")).rstrip("/")
    for allowed in (own, "https://grafana.example.com", None):
        async with browser.ws_connect(proxy.make_url("/ws"), origin=allowed) as ws:
            assert "hello" in await ws.receive_json()
    for foreign in ("https://evil.example.net", "null", own.replace("127.0.0.1", "localhost")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await browser.ws_connect(proxy.make_url("/ws"), origin=foreign)
        assert refused.value.status == 403


async def test_websocket_closed_with_1008_when_the_session_expires(
    aiohttp_server: Any, upstream: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    clock = FakeClock(system_clock())
    settings = make_settings(
        upstream=[str(upstream.make_url("/"))],
        oidc_issuer_url=provider.node.issuer,
        client_id=provider.node.client_id,
        client_secret=provider.node.client_secret,
        cookie_expire="1h",
        websocket_session_check="50ms",
    )
    proxy: TestServer = await aiohttp_server(build_app(settings, clock))
    await _signed_in(proxy, browser, provider)
    async with browser.ws_connect(proxy.make_url("/ws")) as ws:
        await ws.receive_json()
        await ws.send_str("still here")
        assert await ws.receive_str() == "echo:still here"
        clock.advance(3601)
        closing = await ws.receive()
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1008)
        assert closing.extra == "session expired"
    # The upstream is told the socket is going away (1001), not a normal close (1000) nor 1008: the
    # policy decision is the proxy's, and the upstream did nothing wrong.
    assert await asyncio.wait_for(upstream.app[CLOSED].get(), 10) == 1001


async def test_idle_websocket_closed(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    proxy = await proxy_factory(websocket_idle_timeout="200ms")
    await _signed_in(proxy, browser, provider)
    async with browser.ws_connect(proxy.make_url("/ws")) as ws:
        await ws.receive_json()
        closing = await ws.receive()
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)


@pytest.fixture
async def silent_upstream() -> AsyncIterator[int]:
    """Accepts connections and never answers: a handshake that never completes."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_websocket_handshake_timeout(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any, silent_upstream: int
) -> None:
    proxy = await proxy_factory(
        upstream=[f"http://127.0.0.1:{silent_upstream}/"],
        websocket_handshake_timeout="200ms",
        upstream_timeout="200ms",
    )
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    with pytest.raises(aiohttp.WSServerHandshakeError) as failed:
        await browser.ws_connect(proxy.make_url("/ws"))
    assert failed.value.status == 504


async def test_extensions_are_negotiated_between_browser_and_upstream(
    proxy: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    """The proxy relays frames untouched, so per-message-deflate is the two endpoints' agreement."""
    await _signed_in(proxy, browser, provider)
    async with browser.ws_connect(proxy.make_url("/ws"), compress=0) as ws:
        hello = (await ws.receive_json())["hello"]
        assert "Sec-WebSocket-Extensions" not in hello  # the proxy offered nothing of its own
        assert ws.compress == 0
        await ws.send_str("plain")
        assert await ws.receive_str() == "echo:plain"
    async with browser.ws_connect(proxy.make_url("/ws"), compress=15) as ws:
        hello = (await ws.receive_json())["hello"]
        assert hello["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        assert ws.compress == 15  # the upstream's answer reached the browser
        text = "compressible " * 5000
        await ws.send_str(text)
        assert await ws.receive_str() == "echo:" + text


def _proxy_tasks() -> list[asyncio.Task[Any]]:
    """Tasks running (or awaiting through) oidcproxy code, following each one's chain of awaits."""

    def in_proxy(task: asyncio.Task[Any]) -> bool:
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None)
            if frame is not None and "/oidcproxy/" in frame.f_code.co_filename:
                return True
            awaited = getattr(awaited, "cr_await", None)
        return False

    return [t for t in asyncio.all_tasks() if in_proxy(t)]


async def test_open_websockets_hold_no_task_nor_aiohttp_connection_in_the_proxy(
    proxy: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    """What makes 10,000 idle WebSockets cheap: after the handshake a socket is two transports and
    their protocol callbacks, nothing waiting in a task; and a closed one leaves nothing behind."""
    await _signed_in(proxy, browser, provider)
    assert proxy.runner is not None and proxy.runner.server is not None
    served = proxy.runner.server
    before, running = len(served.connections), set(_proxy_tasks())  # the app's own background tasks
    sockets = [await browser.ws_connect(proxy.make_url("/ws")) for _ in range(5)]
    for ws in sockets:
        await ws.receive_json()
    assert set(_proxy_tasks()) - running == set()
    assert len(served.connections) <= before  # an upgrade may take over a kept-alive connection
    relays = proxy.app[PROXY].websockets
    assert len(relays) == 5
    for ws in sockets:
        await ws.send_str("still relayed")
        assert await ws.receive_str() == "echo:still relayed"
        await ws.close()
    async with asyncio.timeout(10):
        while len(relays):  # noqa: ASYNC110 - relays end in transport callbacks; nothing to await
            await asyncio.sleep(0.01)


async def test_stopping_proxy_closes_open_websockets_with_1001(
    proxy: TestServer, upstream: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    await _signed_in(proxy, browser, provider)
    async with browser.ws_connect(proxy.make_url("/ws")) as ws:
        await ws.receive_json()
        await proxy.close()
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)  # going away
    assert await asyncio.wait_for(upstream.app[CLOSED].get(), 10) == 1001
