"""The upstream HTTP/1.1 client against real servers on loopback: aiohttp apps, a real NGINX over TLS, and
small raw asyncio servers for what a well-behaved framework will not send (close-delimited bodies, 1xx,
a kept-alive connection dropped just as the next request arrives)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.errors import UpstreamBroken, UpstreamTimeout, UpstreamUnavailable
from oidcproxy.proxy import UpstreamClient, UpstreamResponse
from tests.support.nginx import run_nginx

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(connect_timeout_s=5, max_field_size=65536)
    yield c
    await c.close()


async def body_of(response: UpstreamResponse) -> bytes:
    parts = []
    try:
        while chunk := await response.read():
            parts.append(chunk)
    finally:
        response.release()
    return b"".join(parts)


def counting_app() -> tuple[web.Application, set[Any]]:
    """Echoes what it got and remembers each client port: one port per TCP connection."""
    peers: set[Any] = set()

    async def echo(request: web.Request) -> web.StreamResponse:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path,
                "bytes": len(body),
                "te": request.headers.get("Transfer-Encoding"),
                "cl": request.headers.get("Content-Length"),
                "host": request.headers.get("Host"),
            }
        )

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(50):
            await response.write(b"%d," % i)
        await response.write_eof()
        return response

    async def status(request: web.Request) -> web.StreamResponse:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        code = int(request.match_info["code"])
        return web.Response(status=code, headers={"ETag": '"v1"'})

    async def big_header(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        return web.Response(text="ok", headers={"X-Big": "b" * size})

    app = web.Application()
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/big-header", big_header)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app, peers


@pytest.fixture
async def counting(aiohttp_server: Any) -> tuple[TestServer, set[Any]]:
    app, peers = counting_app()
    return await aiohttp_server(app), peers


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[URL]:
    """A bare asyncio server; on exit every connection it accepted is closed and its handler ended."""
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        writers.append(writer)
        await handler(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield URL(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_keep_alive_reuses_one_connection(
    client: UpstreamClient, counting: tuple[TestServer, set[Any]]
) -> None:
    server, peers = counting
    for i in range(20):
        response = await client.request("GET", server.make_url(f"/n/{i}?q=1"), [("Accept", "*/*")])
        assert response.status == 200
        assert b'"path": "/n/%d?q=1"' % i in await body_of(response)
    assert len(peers) == 1
    assert client.connections_made == 1


async def test_host_header_added_when_absent_and_kept_when_given(
    client: UpstreamClient, counting: tuple[TestServer, set[Any]]
) -> None:
    server, _ = counting
    plain = await body_of(await client.request("GET", server.make_url("/"), []))
    assert f'"host": "127.0.0.1:{server.port}"'.encode() in plain
    given = await body_of(await client.request("GET", server.make_url("/"), [("Host", "app.example")]))
    assert b'"host": "app.example"' in given


async def test_chunked_response_streams_whole(
    client: UpstreamClient, counting: tuple[TestServer, set[Any]]
) -> None:
    server, _ = counting
    response = await client.request("GET", server.make_url("/chunked"), [])
    assert response.headers()["Transfer-Encoding"] == "chunked"
    assert await body_of(response) == b"".join(b"%d," % i for i in range(50))
    again = await client.request("GET", server.make_url("/chunked"), [])
    await body_of(again)
    assert client.connections_made == 1  # the chunked end was found: the connection went back


async def gen(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_request_body_with_content_length_and_chunked(
    client: UpstreamClient, counting: tuple[TestServer, set[Any]]
) -> None:
    server, _ = counting
    parts = [b"a" * 70000, b"b" * 5, b"c" * 100000]
    size = str(sum(map(len, parts)))
    sized = await body_of(
        await client.request("POST", server.make_url("/up"), [("Content-Length", size)], gen(parts))
    )
    assert b'"bytes": 170005' in sized and b'"te": null' in sized and f'"cl": "{size}"'.encode() in sized
    chunked = await body_of(await client.request("PUT", server.make_url("/up"), [], gen(parts)))
    assert b'"bytes": 170005' in chunked and b'"te": "chunked"' in chunked
    assert client.connections_made == 1


async def test_a_slow_reader_pauses_the_upstream_and_the_pooled_connection_reads_again(
    client: UpstreamClient, aiohttp_server: Any
) -> None:
    size = 3 * 1024 * 1024

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * size)

    app = web.Application()
    app.router.add_get("/big", big)
    server = await aiohttp_server(app)
    async with asyncio.timeout(20):  # a connection parked with reading paused would stall here
        for _ in range(4):
            response = await client.request("GET", server.make_url("/big"), [])
            got = peak = 0
            while True:
                peak = max(peak, response.buffered)
                chunk = await response.read()
                if not chunk:
                    break
                got += len(chunk)
                await asyncio.sleep(0.002)  # a slow client: lets the upstream run ahead of us
            response.release()
            assert got == size
            assert peak <= 512 * 1024  # reading paused past 256 KiB, plus at most one socket read
            parked = client._idle[("http", "127.0.0.1", server.port or 80)]
            assert all(c.transport is not None and c.transport.is_reading() for c in parked)
    assert client.connections_made == 1


async def test_head_204_304_have_no_body_and_keep_the_connection(
    client: UpstreamClient, counting: tuple[TestServer, set[Any]]
) -> None:
    server, peers = counting
    head = await client.request("HEAD", server.make_url("/x"), [])
    assert head.status == 200 and int(head.headers()["Content-Length"]) > 0
    assert await body_of(head) == b""
    for code in (204, 304):
        response = await client.request("GET", server.make_url(f"/status/{code}"), [])
        assert response.status == code
        assert await body_of(response) == b""
    after = await body_of(await client.request("GET", server.make_url("/after"), []))
    assert b'"path": "/after"' in after
    assert client.connections_made == 1 and len(peers) == 1


async def test_large_response_headers_pass_up_to_the_limit(
    client: UpstreamClient, counting: tuple[TestServer, set[Any]]
) -> None:
    server, _ = counting
    ok = await client.request("GET", server.make_url("/big-header").with_query(size=40000), [])
    assert len(ok.headers()["X-Big"]) == 40000
    await body_of(ok)
    with pytest.raises(UpstreamUnavailable, match="too large"):
        await client.request("GET", server.make_url("/big-header").with_query(size=100000), [])


async def test_close_delimited_body_ends_with_the_connection(client: UpstreamClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 300000)
        await writer.drain()
        writer.close()

    async with raw_server(handler) as url:
        response = await client.request("GET", url, [])
        assert await body_of(response) == b"z" * 300000


async def test_truncated_body_is_an_error_not_a_short_answer(client: UpstreamClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with raw_server(handler) as url:
        response = await client.request("GET", url, [])
        with pytest.raises(UpstreamBroken):
            await body_of(response)


async def test_interim_1xx_answers_are_skipped(client: UpstreamClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok")
        await writer.drain()
        await reader.read()
        writer.close()

    async with raw_server(handler) as url:
        response = await client.request("GET", url, [])
        assert response.status == 201
        headers = response.headers()
        assert headers["X-Final"] == "yes" and "Link" not in headers
        assert await body_of(response) == b"ok"


def dropping_server() -> tuple[Handler, list[int]]:
    """Answers the first request on its first connection, then drops that connection when the second
    request arrives on it, as a server does whose keep-alive timeout fired just then."""
    seen: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(len(seen))
        first = len(seen) == 1
        try:
            while True:
                await read_head(reader)
                if first and seen.count(-1) == 1:
                    writer.close()
                    return
                seen.append(-1)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handler, seen


async def test_dropped_pooled_connection_is_retried_once_for_get(client: UpstreamClient) -> None:
    handler, _ = dropping_server()
    async with raw_server(handler) as url:
        assert await body_of(await client.request("GET", url, [])) == b"pong"
        assert await body_of(await client.request("GET", url, [])) == b"pong"
        assert client.connections_made == 2  # the retry went out on a fresh connection


async def test_dropped_pooled_connection_is_not_retried_for_post(client: UpstreamClient) -> None:
    handler, _ = dropping_server()
    async with raw_server(handler) as url:
        assert await body_of(await client.request("GET", url, [])) == b"pong"
        with pytest.raises(UpstreamUnavailable, match="before answering"):
            await client.request("POST", url, [("Content-Length", "3")], gen([b"abc"]))


async def test_upstream_down_is_unavailable(client: UpstreamClient, unused_tcp_port: int) -> None:
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.request("GET", URL(f"http://127.0.0.1:{unused_tcp_port}/"), [])
    assert not isinstance(caught.value, UpstreamTimeout)


async def test_slow_upstream_is_bounded_by_the_caller(client: UpstreamClient) -> None:
    answered = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await answered.wait()
        writer.close()

    async with raw_server(handler) as url:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.request("GET", url, [])
        answered.set()
    assert not client._idle.get(("http", "127.0.0.1", url.port or 80))  # the late connection is gone


async def test_line_breaks_in_header_values_are_refused(client: UpstreamClient) -> None:
    with pytest.raises(UpstreamUnavailable, match="line break"):
        await client.request("GET", URL("http://127.0.0.1:9/"), [("X-A", "1\r\nX-Injected: 2")])


NGINX_SERVER = """
        keepalive_requests 1000;
        add_header X-Connection $connection always;
        gzip on; gzip_types text/plain; gzip_min_length 0;
        location = /text { default_type text/plain; return 200 "hello from nginx, many times over\\n"; }
"""


async def test_nginx_over_tls_keeps_alive_and_streams_chunked(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    tls = ssl.create_default_context()
    ca.configure_trust(tls)
    client = UpstreamClient(connect_timeout_s=5, tls=tls)
    try:
        with run_nginx(
            tmp_path / "nginx", NGINX_SERVER, tmp_path / "cert.pem", tmp_path / "key.pem"
        ) as nginx:
            url = URL(f"https://127.0.0.1:{nginx.port}/text")
            connections = set()
            for _ in range(5):
                plain = await client.request("GET", url, [])
                connections.add(plain.headers()["X-Connection"])
                assert await body_of(plain) == b"hello from nginx, many times over\n"
            gzipped = await client.request("GET", url, [("Accept-Encoding", "gzip")])
            headers = gzipped.headers()
            assert headers["Transfer-Encoding"] == "chunked" and headers["Content-Encoding"] == "gzip"
            connections.add(headers["X-Connection"])
            assert (await body_of(gzipped))[:2] == b"\x1f\x8b"
            assert len(connections) == 1 and client.connections_made == 1
    finally:
        await client.close()


def test_on_uvloop_as_the_workers_run() -> None:
    """Workers run uvloop, whose transports are not asyncio's: the same exchanges on its loop."""

    async def scenario() -> None:
        app, peers = counting_app()
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = URL(f"http://127.0.0.1:{runner.addresses[0][1]}/")
        client = UpstreamClient()
        try:
            for _ in range(3):
                assert b'"path": "/a"' in await body_of(await client.request("GET", base / "a", []))
            up = await client.request("POST", base / "up", [], gen([b"x" * 100000, b"y"]))
            assert b'"bytes": 100001' in await body_of(up)
            assert await body_of(await client.request("HEAD", base / "h", [])) == b""
            assert await body_of(await client.request("GET", base / "chunked", [])) == b"".join(
                b"%d," % i for i in range(50)
            )
            assert client.connections_made == 1 and len(peers) == 1
        finally:
            await client.close()
            await runner.cleanup()

    uvloop.run(scenario())
