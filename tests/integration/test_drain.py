"""Graceful drain of the real command, as an orchestrator stops it: SIGTERM to the process, or to its
whole process group. One process and `--workers 2` (with the keeper): /ready turns 503 at once, new
connections are served during --shutdown-delay, then refused; the request in flight finishes, an
open WebSocket is closed with 1001, and the process exits 0 without a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from oidcproxy.config import cookie_key_material
from oidcproxy.model import Identity, Session, Tokens, system_clock
from oidcproxy.sessions.cookies import CookiePolicy
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.store import CookieSessionStore
from tests.factories import COOKIE_SECRET
from tests.support.nodeidp import NodeIdP

_BOUND_S = 30.0
DELAY_S = 2.0


class Upstream:
    """/slow answers when the test lets it; /ws echoes; anything else answers at once."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.ws_closed_with: list[int | None] = []

    def app(self) -> web.Application:
        async def slow(request: web.Request) -> web.StreamResponse:
            self.arrived.set()
            await self.release.wait()
            return web.Response(text="finished")

        async def ws(request: web.Request) -> web.StreamResponse:
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            async for message in socket:
                await socket.send_str(message.data)
            self.ws_closed_with.append(socket.close_code)
            return socket

        async def fast(request: web.Request) -> web.StreamResponse:
            return web.Response(text="fast")

        app = web.Application()
        app.router.add_get("/slow", slow)
        app.router.add_get("/ws", ws)
        app.router.add_get("/{tail:.*}", fast)
        return app


@pytest.fixture
async def upstream(aiohttp_server: Any) -> AsyncIterator[tuple[Upstream, TestServer]]:
    up = Upstream()
    server: TestServer = await aiohttp_server(up.app())
    yield up, server
    up.release.set()


@pytest.fixture
def cookie() -> dict[str, str]:
    """A session sealed with the proxy's secret, as its own callback would have set it."""
    store = CookieSessionStore(KeyRing([cookie_key_material(COOKIE_SECRET)]), CookiePolicy(), system_clock)
    now = system_clock()
    identity = Identity("sub-d", "dora@example.com", True, "dora@example.com", "dora", ())
    session = Session(identity, Tokens("id", "at", "", now + 600), now, now + 600)
    return {c.name: c.value for c in asyncio.run(store.save(session, {}))}


@pytest.fixture
def proxy(
    request: pytest.FixtureRequest,
    upstream: tuple[Upstream, TestServer],
    node_idp: NodeIdP,
    unused_tcp_port: int,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    workers = request.param[0]
    address = f"127.0.0.1:{unused_tcp_port}"
    command = [
        sys.executable, "-m", "oidcproxy", "--workers", str(workers), "--http-address", address,
        "--upstream", str(upstream[1].make_url("/")), "--oidc-issuer-url", node_idp.issuer,
        "--client-id", node_idp.client_id, "--client-secret", node_idp.client_secret,
        "--cookie-secret", COOKIE_SECRET, "--cookie-secure=false", "--email-domain", "example.com",
        f"--shutdown-delay={DELAY_S:g}s", "--shutdown-grace=20s",
    ]  # fmt: skip
    # A session of its own, so that a signal to its process group reaches no one else.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None and "listening" in process.stdout.readline()
        yield process, f"http://{address}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=_BOUND_S)


async def status(base: str, path: str) -> int | None:
    """The status of a GET on a new connection; None when the connection is refused."""
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
            fresh.get(base + path) as response,
        ):
            return response.status
    except aiohttp.ClientConnectionError:
        return None


@pytest.mark.parametrize(
    "proxy",
    [(1, "process"), (1, "group"), (2, "process"), (2, "group")],
    indirect=True,
    ids=["1-worker-process", "1-worker-group", "2-workers-process", "2-workers-group"],
)
async def test_sigterm_drains_http_and_closes_websockets_with_1001(
    proxy: tuple[subprocess.Popen[str], str],
    upstream: tuple[Upstream, TestServer],
    cookie: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    process, base = proxy
    up, _ = upstream
    target = request.node.callspec.params["proxy"][1]
    assert await status(base, "/ready") == 200
    async with aiohttp.ClientSession(cookies=cookie) as browser:
        ws = await browser.ws_connect(f"{base}/ws", headers={"Origin": base})
        await ws.send_str("hi")
        assert (await ws.receive()).data == "hi"
        in_flight = asyncio.create_task(browser.get(f"{base}/slow"))
        async with asyncio.timeout(_BOUND_S):
            await up.arrived.wait()
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        if target == "group":
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)

        # 1. /ready answers 503 at once; 2. new connections are still served during the delay.
        async with asyncio.timeout(DELAY_S):
            while await status(base, "/ready") != 503:  # noqa: ASYNC110 - another process changes it
                await asyncio.sleep(0.05)
        assert await status(base, "/ping") == 200
        assert loop.time() - signalled < DELAY_S
        # 3. then the listener closes, and the WebSocket is closed with 1001 (not cut at the end).
        closing = await asyncio.wait_for(ws.receive(), _BOUND_S)
        assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1001)
        assert loop.time() - signalled >= DELAY_S
        await ws.close()
        async with asyncio.timeout(_BOUND_S):
            while await status(base, "/ping") is not None:  # noqa: ASYNC110 - each worker closes its own
                await asyncio.sleep(0.05)
        assert process.poll() is None  # still draining: the request in flight
        up.release.set()
        async with asyncio.timeout(_BOUND_S):
            response = await in_flight
        assert response.status == 200 and await response.text() == "finished"
        response.release()
    # 5. exit 0, and nothing alarming on the way out.
    _, err = await asyncio.to_thread(process.communicate, None, _BOUND_S)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Event loop stopped" not in err, err
    assert up.ws_closed_with == [1001]  # the upstream was told the same
