"""WebSocket back-pressure through the real proxy: an upstream that floods a browser which reads
nothing is held back (its sends block) instead of the proxy buffering without bound, and the flow
resumes, in order and complete, once the browser reads."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web.app import build_app
from tests.factories import make_settings, walk_login

pytestmark = pytest.mark.parametrize("provider", ["node"], indirect=True)

MESSAGE = 64 * 1024
FLOOD = 256 * 1024 * 1024  # what the upstream would send if nothing held it back
# Loopback socket buffers on two hops (upstream->proxy, proxy->browser) can hold tens of MB at most
# (tcp_rmem/tcp_wmem maxima); anything near FLOOD would be the proxy buffering in memory.
BOUND = FLOOD // 2
# The upstream calls the flood held back once a single send has not completed for this long. Not a
# performance assertion: a busy machine can only make the stall come later, never make it pass early.
STALL_S = 2.0


@dataclass
class Flood:
    sent: int = 0
    stalled_at: int | None = None
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # sent all of FLOOD


FLOOD_STATE = web.AppKey("flood", Flood)


def flood_upstream() -> web.Application:
    """/ws sends numbered 64 KiB binary messages as fast as its socket takes them."""

    async def ws(request: web.Request) -> web.StreamResponse:
        state = request.app[FLOOD_STATE]
        socket_ = web.WebSocketResponse(max_msg_size=0)
        await socket_.prepare(request)
        padding = b"x" * (MESSAGE - 8)
        number = 0
        while state.sent < FLOOD and not socket_.closed:
            send = asyncio.ensure_future(socket_.send_bytes(struct.pack(">Q", number) + padding))
            done, _ = await asyncio.wait({send}, timeout=STALL_S)
            if not done and state.stalled_at is None:
                state.stalled_at = state.sent
                state.stalled.set()
            try:
                await send  # completes once the reader makes room again
            except ConnectionError:
                break
            state.sent += MESSAGE
            number += 1
        if state.sent >= FLOOD:
            state.finished.set()
        async for _ in socket_:
            pass
        return socket_

    async def page(_: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    app = web.Application()
    app[FLOOD_STATE] = Flood()
    app.router.add_get("/ws", ws)
    app.router.add_get("/{tail:.*}", page)
    return app


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(flood_upstream())
    return server


async def test_slow_reader_holds_the_upstream_back_instead_of_filling_the_proxy(
    proxy: TestServer, upstream: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    state = upstream.app[FLOOD_STATE]
    assert (await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")).status == 200
    async with browser.ws_connect(proxy.make_url("/ws"), max_msg_size=0) as ws:
        # The browser reads nothing: the upstream must end up blocked, far short of the flood.
        ends = [asyncio.ensure_future(state.stalled.wait()), asyncio.ensure_future(state.finished.wait())]
        await asyncio.wait(ends, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        for end in ends:
            end.cancel()
        assert state.stalled_at is not None, f"upstream sent {state.sent} bytes and never blocked"
        assert state.stalled_at < BOUND, (
            f"upstream sent {state.stalled_at} bytes into a reader that read none"
        )

        # Reading again lets the upstream go on; nothing was lost or reordered on the way.
        want = state.stalled_at + 8 * 1024 * 1024
        received = 0
        while received < want:
            data = await asyncio.wait_for(ws.receive_bytes(), 60)
            assert len(data) == MESSAGE
            assert struct.unpack(">Q", data[:8])[0] == received // MESSAGE
            received += len(data)
        assert state.sent > state.stalled_at


async def test_session_ending_mid_flood_closes_after_the_message_under_way(
    aiohttp_server: Any, upstream: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    """Frames are relayed raw, so the proxy's close frame must wait for the frame under way: the
    browser gets every message whole and in order, then 1008."""
    state = upstream.app[FLOOD_STATE]
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
    assert (await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")).status == 200
    async with browser.ws_connect(proxy.make_url("/ws"), max_msg_size=0) as ws:
        await asyncio.wait_for(state.stalled.wait(), 120)  # buffers full: a frame is likely cut mid-way
        clock.advance(3601)
        number = 0
        while (msg := await asyncio.wait_for(ws.receive(), 60)).type is aiohttp.WSMsgType.BINARY:
            assert len(msg.data) == MESSAGE
            assert struct.unpack(">Q", msg.data[:8])[0] == number
            number += 1
        assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 1008, "session expired")
        assert number * MESSAGE <= state.sent
