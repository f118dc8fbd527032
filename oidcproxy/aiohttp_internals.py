"""Every use of aiohttp's private API, in one place, each with why no public API does the job.

aiohttp is capped to the minor series the tests pass on (pyproject.toml), and
tests/integration/test_aiohttp_internals.py checks each thing relied on here by name, so an upgrade
that changes one fails there, loudly, instead of as a bare 400 or a slower proxy. Three needs:

- `BufferedHeadersResponse`: a streamed response whose status line and headers leave with the first
  body chunk (one write for a small answer instead of two).
- `hook_servers`: answer what aiohttp's parser refuses (a header line too long, too many header
  lines) as we choose, and check every request before aiohttp's own Expect handling; both happen
  before any handler or middleware runs.
- `take_transport`: after a WebSocket's 101, the connection leaves aiohttp for the raw relay, so an
  idle socket holds no aiohttp request, protocol state or task.

Imports nothing from oidcproxy: the policy (431 pages, logging) is the caller's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_request import BaseRequest

__all__ = [
    "BufferedHeadersResponse",
    "Handler",
    "ParseErrorAnswer",
    "hook_servers",
    "take_transport",
    "too_many_headers",
]

Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]
ParseErrorAnswer = Callable[[BaseRequest, BaseException | None], web.StreamResponse | None]
"""answer(request, exc): our response to a request aiohttp could not use, or None for aiohttp's own."""


class BufferedHeadersResponse(web.StreamResponse):
    """A StreamResponse that holds its status line and headers back until the first body chunk.

    web.Response does the same for itself, measured in bench/ as one write instead of two. Private:
    `StreamResponse._send_headers_immediately`, a class attribute `_write_headers` reads. No public
    switch exists: `prepare()` is what sends the headers, and a proxied answer must be prepared before
    its body streams.
    """

    _send_headers_immediately = False


def too_many_headers(exc: BaseException | None) -> bool:
    """Whether aiohttp refused the request for more than max_headers header lines.

    Not a private name but private behaviour: both of aiohttp's parsers (C and Python) raise a bare
    BadHttpMessage("Too many headers received"); no subclass marks it (a line too long has
    LineTooLong), so its text is the only way to tell it from any other malformed request.
    """
    return isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc)


class _Protocol(web.RequestHandler):
    """aiohttp's per-connection protocol, with parse errors answered by `answer` first."""

    __slots__ = ("_answer",)

    def __init__(self, manager: web.Server, *, answer: ParseErrorAnswer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._answer = answer

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # A public method, but overriding it in a subclass is the only way in: aiohttp answers what its
        # parser refused from here (RequestHandler._make_error_handler), before any handler or
        # middleware, and web.Server builds the plain RequestHandler (see _Server.__call__).
        answer = self._answer(request, exc)
        return super().handle_error(request, status, exc, message) if answer is None else answer


class _Server(web.Server):
    """web.Server building `_Protocol`s; what it is given it keeps itself, rather than reading the
    private `_loop` and `_kwargs` that Server.__call__ uses."""

    def __init__(
        self,
        handler: Handler,
        *,
        answer: ParseErrorAnswer,
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        protocol = {k: v for k, v in kwargs.items() if k not in ("request_factory", "handler_cancellation")}
        super().__init__(handler, loop=loop, **kwargs)
        self._protocol_loop = loop or asyncio.get_running_loop()
        self._protocol_kwargs = protocol
        self._answer = answer

    def __call__(self) -> web.RequestHandler:
        # Server.__call__ is the protocol factory the event loop calls for each connection; aiohttp
        # offers no argument for the protocol class, so this is its body with ours.
        return _Protocol(self, loop=self._protocol_loop, answer=self._answer, **self._protocol_kwargs)


def hook_servers(
    app: web.Application, *, wrap: Callable[[Handler], Handler], answer: ParseErrorAnswer
) -> None:
    """Every server built for `app` (web.run_app, web.AppRunner, aiohttp's test servers) answers parse
    errors with `answer` first and hands requests to `wrap(app's own handler)`.

    Private: `Application._make_handler`, replaced on this instance. It is the one place all of those
    runners build their web.Server (AppRunner._make_server calls it); handler_args only reach the
    RequestHandler's keyword arguments, and no public argument chooses the Server or protocol class.
    Private: `Server._kwargs`, read once per server: the RequestHandler arguments the app assembled
    (handler_args, debug, the access log class and format), which no accessor exposes.
    """
    original = app._make_handler

    def make_handler(*, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> web.Server:
        plain = original(loop=loop, **kwargs)
        return _Server(
            wrap(plain.request_handler),
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=loop,
            answer=answer,
            **plain._kwargs,
        )

    setattr(app, "_make_handler", make_handler)  # noqa: B010 - an instance hook, see above


def take_transport(request: BaseRequest) -> tuple[asyncio.Transport, bytes]:
    """Take the request's connection away from aiohttp, after its 101 went out: the transport, and
    the bytes the client sent behind its upgrade request (RFC 6455 4.1 says none, but they are kept).

    The caller must set its own protocol on the transport at once and return the prepared response
    from its handler. aiohttp has no public way to hand a connection over. Private behaviour:
    - `RequestHandler.transport` set to None first: `connection_lost` then forgets the connection
      without closing it, and `start()` closes only a transport it still has;
    - `RequestHandler.connection_lost(None)`: the web.Server's count of connections drops it (its
      shutdown waits for none), the keep-alive timer stops, and the handler's task runs to its end
      (our response's write_eof has nothing left to write) instead of waiting on the socket;
    - `RequestHandler._message_tail`: what the parser kept behind an accepted upgrade request.
    """
    protocol = request.protocol
    transport = protocol.transport
    if transport is None:
        raise ConnectionResetError("the client left before its WebSocket began")
    tail = bytes(protocol._message_tail)
    protocol._message_tail = b""
    protocol.transport = None
    protocol.connection_lost(None)
    return transport, tail
