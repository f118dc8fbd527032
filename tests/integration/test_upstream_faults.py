"""A response that breaks after its status line went out: an upstream resetting mid-body (plain and
chunked) and a client leaving mid-body, through the real proxy, with raw asyncio servers and sockets.

The client must see exactly the status, the bytes relayed, then the end of the connection: no second
status line, no chunked body's last chunk, one log line and no traceback. The proxied paths are served
without sign-in (--skip-auth-route): the streaming code is the same for signed-in requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from oidcproxy.web.app import build_app
from oidcproxy.web.appkeys import PROXY, SETTINGS
from oidcproxy.web.middleware import errors_and_ids, remember_started
from tests.factories import make_settings

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RID = "fault-test-1"
PART = bytes(range(256)) * 256  # 64 KiB
CHUNKS = [b"first chunk " * 10, b"second chunk " * 20, b"third chunk " * 30]


@contextlib.asynccontextmanager
async def raw_upstream(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@dataclass(frozen=True, slots=True)
class Served:
    app: web.Application
    port: int


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application, int], Awaitable[Served]]]:
    """Serve an app as `oidcproxy` does (web.run_app: a client leaving does not cancel its handler;
    aiohttp's TestServer would cancel it)."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application, port: int) -> Served:
        runner = web.AppRunner(app)
        runners.append(runner)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return Served(app, port)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def proxy_to(serve: Any, unused_tcp_port_factory: Any) -> Callable[[int], Awaitable[Served]]:
    async def make(upstream_port: int) -> Served:
        port = unused_tcp_port_factory()
        settings = make_settings(
            upstream=[f"http://127.0.0.1:{upstream_port}/"],
            oidc_type="embedded",
            http_address=f"127.0.0.1:{port}",
            skip_auth_route=["^/files/"],
            reverse_proxy=True,  # the tests' X-Request-Id is kept only from a trusted (loopback) proxy
        )
        served: Served = await serve(build_app(settings), port)
        return served

    return make


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed process or a middlebox would."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def ask(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A GET on a raw socket; answers the socket and the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Request-Id: {RID}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def rest_of(reader: asyncio.StreamReader) -> tuple[bytes, str]:
    """Everything the proxy still sends, and how the connection ended (a hang ends the wait in 5 s)."""
    data = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        return data, "reset"
    except TimeoutError:
        return data, "still open"
    return data, "closed"


def assert_one_clean_line(caplog: pytest.LogCaptureFixture, *expected: str) -> None:
    lines = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert len(lines) == 1, lines
    assert all(part in lines[0] for part in expected), lines[0]
    assert f"[request_id={RID}]" in lines[0]
    assert "Traceback" not in caplog.text and "unhandled" not in caplog.text.lower(), caplog.text
    assert all(r.exc_info is None for r in caplog.records), caplog.text


async def test_upstream_reset_mid_content_length_body_cuts_the_connection(
    proxy_to: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    relayed = asyncio.Event()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n")
        writer.write(b"Content-Length: 1048576\r\n\r\n" + PART)
        await relayed.wait()
        reset(writer)

    async with raw_upstream(upstream) as port:
        proxy = await proxy_to(port)
        reader, writer, head = await ask(proxy.port, "/files/big")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nContent-Length: 1048576\r\n" in head
        assert await reader.readexactly(len(PART)) == PART
        relayed.set()
        rest, end = await rest_of(reader)
        writer.close()
    assert (rest, end) in ((b"", "closed"), (b"", "reset")), (rest[:200], end)
    assert_one_clean_line(caplog, "GET /files/big -> 200 cut short", f"127.0.0.1:{port}", "65536 bytes")
    assert proxy.app[PROXY].cut["upstream"] == 1


async def test_upstream_reset_after_three_chunks_ends_without_the_last_chunk(
    proxy_to: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    seen = [asyncio.Event() for _ in CHUNKS]

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        for chunk, event in zip(CHUNKS, seen, strict=True):
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await event.wait()  # one chunk at a time, so the proxy relays each as its own chunk
        reset(writer)

    async with raw_upstream(upstream) as port:
        proxy = await proxy_to(port)
        reader, writer, head = await ask(proxy.port, "/files/stream")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nTransfer-Encoding: chunked\r\n" in head
        for chunk, event in zip(CHUNKS, seen, strict=True):
            framed = b"%x\r\n%b\r\n" % (len(chunk), chunk)
            assert await reader.readexactly(len(framed)) == framed
            event.set()
        rest, end = await rest_of(reader)
        writer.close()
    # Not b"0\r\n\r\n" (which would make the truncated body look complete), not "HTTP/1.1 500".
    assert (rest, end) in ((b"", "closed"), (b"", "reset")), (rest[:200], end)
    total = sum(map(len, CHUNKS))
    assert_one_clean_line(caplog, "GET /files/stream -> 200 cut short", f"127.0.0.1:{port}", f"{total} bytes")
    assert proxy.app[PROXY].cut["upstream"] == 1


async def test_client_leaving_mid_body_is_one_line_and_frees_the_upstream(
    proxy_to: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client_gone = asyncio.Event()
    upstream_released = asyncio.Event()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (64 * len(PART), PART))
        await client_gone.wait()
        try:
            for _ in range(63):  # the proxy stops reading once a write to the client fails
                writer.write(PART)
                await writer.drain()
            await reader.read()  # the proxy closing its side ends this
        except ConnectionError:
            pass
        writer.close()
        upstream_released.set()

    async with raw_upstream(upstream) as port:
        proxy = await proxy_to(port)
        reader, writer, head = await ask(proxy.port, "/files/video")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert await reader.readexactly(len(PART)) == PART
        reset(writer)
        client_gone.set()
        async with asyncio.timeout(5):
            await upstream_released.wait()
    assert_one_clean_line(caplog, "GET /files/video -> 200 cut short", "client left", f"127.0.0.1:{port}")
    assert proxy.app[PROXY].cut == {"client": 1}


async def test_a_bug_after_the_response_started_keeps_its_traceback_and_cuts_the_connection(
    serve: Any, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The middleware's rule for any exception, shown with a handler that fails for no network reason."""

    async def buggy(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        raise KeyError("a bug")

    app = web.Application(middlewares=[errors_and_ids])
    app[SETTINGS] = make_settings()
    app.on_response_prepare.append(remember_started)
    app.router.add_get("/bug", buggy)
    server = await serve(app, unused_tcp_port)
    reader, writer, head = await ask(server.port, "/bug")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    rest, end = await rest_of(reader)
    writer.close()
    assert (rest, end) in ((b"x" * 10, "closed"), (b"x" * 10, "reset")), (rest[:200], end)
    bug = [r for r in caplog.records if r.exc_info is not None]
    assert len(bug) == 1 and "connection cut" in bug[0].getMessage(), caplog.text
