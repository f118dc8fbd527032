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

from tests.factories import walk_login

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
