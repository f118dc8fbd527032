"""What oidcproxy.aiohttp_internals relies on in aiohttp, checked against the installed aiohttp.

aiohttp is capped to one minor series because of these; when the cap is raised, this file says which
private name or behaviour moved, by name, before a user sees a bare 400 or a slower proxy. Real
servers on 127.0.0.1, raw sockets as clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_request import BaseRequest

from oidcproxy.aiohttp_internals import (
    BufferedHeadersResponse,
    Handler,
    hook_servers,
    take_transport,
    too_many_headers,
)


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)  # the runner web.run_app uses, as test servers do
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])  # error answers come as HTTP/1.0


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _raw(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            return await reader.read()  # to the end: every answer here closes
    finally:
        writer.close()


def test_the_private_names_exist_with_the_shapes_used() -> None:
    assert web.StreamResponse._send_headers_immediately is True
    assert web.Response._send_headers_immediately is False  # aiohttp's own use of the switch
    make = inspect.signature(web.Application._make_handler)
    assert "loop" in make.parameters and make.parameters["loop"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "_message_tail" in web.RequestHandler.__slots__
    handle_error = inspect.signature(web.RequestHandler.handle_error)
    assert list(handle_error.parameters) == ["self", "request", "status", "exc", "message"]
    init = inspect.signature(web.RequestHandler.__init__)
    assert list(init.parameters)[:3] == ["self", "manager", "loop"]


async def test_make_handler_builds_the_server_with_the_app_handler_args_in_kwargs() -> None:
    app = web.Application(handler_args={"max_field_size": 123, "max_headers": 7})
    server = app._make_handler(loop=asyncio.get_running_loop())
    assert isinstance(server, web.Server)
    assert server._kwargs["max_field_size"] == 123 and server._kwargs["max_headers"] == 7
    assert callable(server.request_handler) and callable(server.request_factory)
    assert isinstance(server.handler_cancellation, bool)
    assert isinstance(server(), web.RequestHandler)


async def test_parse_errors_reach_our_answer_with_the_exceptions_we_tell_apart() -> None:
    seen: list[BaseException | None] = []

    def answer(request: BaseRequest, exc: BaseException | None) -> web.StreamResponse | None:
        seen.append(exc)
        return web.Response(status=431, text="ours")

    app = web.Application(handler_args={"max_field_size": 100, "max_line_size": 100, "max_headers": 5})
    app.router.add_get("/", _ok)
    hook_servers(app, wrap=lambda inner: inner, answer=answer)
    async with _serve(app) as port:
        long_line = await _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"a" * 200 + b"\r\n\r\n")
        many = await _raw(
            port, b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(9)) + b"\r\n"
        )
    assert _status(long_line) == 431 and _status(many) == 431
    assert isinstance(seen[0], LineTooLong)
    assert isinstance(seen[1], BadHttpMessage) and not isinstance(seen[1], LineTooLong)
    assert too_many_headers(seen[1]) and not too_many_headers(seen[0])


async def test_requests_pass_through_the_wrapped_handler_before_the_app() -> None:
    calls: list[str] = []

    def wrap(inner: Handler) -> Handler:
        async def outer(request: BaseRequest) -> web.StreamResponse:
            calls.append(request.path)
            return await inner(request)

        return outer

    app = web.Application()
    app.router.add_get("/", _ok)
    hook_servers(app, wrap=wrap, answer=lambda request, exc: None)
    async with _serve(app) as port:
        answer = await _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        bad = await _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")
    assert _status(answer) == 200 and answer.endswith(b"ok")
    assert _status(bad) == 400  # answer gave None: aiohttp's own answer
    assert calls == ["/"]


@pytest.mark.parametrize(("cls", "buffered"), [(BufferedHeadersResponse, True), (web.StreamResponse, False)])
async def test_buffered_headers_wait_for_the_first_body_chunk(
    cls: type[web.StreamResponse], buffered: bool
) -> None:
    written: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = cls()
        await response.prepare(request)
        written.append(request.writer.output_size)  # bytes handed to the socket so far
        await response.write(b"body")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    async with _serve(app) as port:
        answer = await _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _status(answer) == 200 and b"body" in answer
    assert (written[0] == 0) is buffered


class _Echo(asyncio.Protocol):
    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"echo:" + data)


async def test_take_transport_hands_the_connection_over_after_a_101() -> None:
    """After the 101, the bytes sent behind the upgrade request and every later byte reach our protocol;
    aiohttp forgets the connection (its server counts none, its handler task ends) and never closes it."""
    taken: list[asyncio.Transport] = []
    handlers: list[asyncio.Task[object] | None] = []

    async def upgrade(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=101, reason="Switching Protocols")
        response.headers.update({"Upgrade": "websocket", "Connection": "Upgrade"})
        await response.prepare(request)
        transport, tail = take_transport(request)
        echo = _Echo(transport)
        transport.set_protocol(echo)
        transport.resume_reading()
        echo.data_received(tail)
        taken.append(transport)
        handlers.append(asyncio.current_task())
        return response

    app = web.Application()
    app.router.add_get("/", upgrade)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly")
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await reader.readexactly(10) == b"echo:early"
            task = handlers[0]
            assert task is not None
            await asyncio.wait({task})
            assert runner.server is not None and runner.server.connections == []
            writer.write(b"later")
            assert await reader.readexactly(10) == b"echo:later"
        await runner.cleanup()  # the server's shutdown does not close what it handed over
        assert not taken[0].is_closing()
    finally:
        writer.close()
        for transport in taken:
            transport.close()
        await runner.cleanup()
