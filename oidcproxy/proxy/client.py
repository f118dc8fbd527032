"""A lean HTTP/1.1 client for proxied requests: a keep-alive pool per origin, one write per request head,
responses parsed by llhttp (httptools) and handed out chunk by chunk with back-pressure both ways.

Used by `upstream` for everything but WebSockets (those keep aiohttp's ws_connect). Knows nothing of
sessions or header policy: it sends the headers it is given. Imports only `errors`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import httptools
from multidict import CIMultiDict
from yarl import URL

from oidcproxy.errors import UpstreamTimeout, UpstreamUnavailable

__all__ = ["UpstreamBroken", "UpstreamClient", "UpstreamResponse"]

# RFC 9110 9.2.2: a request with one of these methods may be sent again when the connection died
# before any answer came back.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_MAX_HEADERS = 128  # aiohttp's client default, kept from before this client existed
_HIGH_WATER = 256 * 1024  # body bytes queued from the upstream before we stop reading its socket
_LOW_WATER = 64 * 1024
_MAX_IDLE_PER_ORIGIN = 1024
_SENDERS: set[asyncio.Task[None]] = set()


class UpstreamBroken(ConnectionResetError):
    """The upstream connection failed after the answer had begun (truncated body, bad framing)."""


Origin = tuple[str, str, int]  # scheme, host, port


class _Connection(asyncio.Protocol):
    """One kept-alive connection; carries one request at a time. Callbacks are llhttp's (httptools)."""

    def __init__(self, client: UpstreamClient, origin: Origin) -> None:
        self._client = client
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._drain: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._reading_paused = False
        self._parser: Any = None
        self._response: UpstreamResponse | None = None

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None or self._parser is None:
            # Bytes nobody asked for (on an idle connection, or after a complete answer): unusable.
            self.close()
            return
        if not response.headers_done:
            response.head_bytes += len(data)
            if response.head_bytes > self._client.max_head_bytes:
                response.fail(UpstreamUnavailable(f"{self._where()}: response headers too large"))
                self.close()
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            response.fail(UpstreamUnavailable(f"{self._where()}: unexpected protocol switch"))
            self.close()
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, UpstreamUnavailable | UpstreamBroken):
                response.fail(cause)
            elif response.headers_done:
                response.fail(UpstreamBroken(f"{self._where()}: bad response body: {exc}"))
            else:
                response.fail(UpstreamUnavailable(f"{self._where()}: bad response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self._client._forget(self)
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("upstream closed the connection"))
        self._drain = None
        response = self._response
        if response is not None and not response.complete:
            if response.close_delimited and response.headers_done:
                response.finish()  # RFC 9112 6.3 rule 8: the body ends when the connection does
            else:
                response.lost(self._where(), exc)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    # -- llhttp callbacks (httptools)
    def on_status(self, reason: bytes) -> None:
        if self._response is not None:
            self._response.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        if response is None:
            return
        if len(name) + len(value) + 2 > self._client.max_field_size or len(response.raw) >= _MAX_HEADERS:
            raise UpstreamUnavailable(f"{self._where()}: a response header line is too large or too many")
        response.raw.append((name, value))

    def on_headers_complete(self) -> None:
        response = self._response
        if response is None or self._parser is None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise UpstreamUnavailable(f"{self._where()}: 101 to a plain request")
            response.raw.clear()  # 100 Continue, 103 Early Hints: interim, the real answer follows
            response.reason = ""
            return
        response.headers_ready(status, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None and not response.complete:
            response.feed(body)
            if response.buffered > _HIGH_WATER and self.transport is not None and not self._reading_paused:
                self._reading_paused = True
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        response = self._response
        if response is not None and response.headers_done and not response.complete:
            response.finish()

    # -- used by the client and the response
    def begin(self, response: UpstreamResponse) -> None:
        self._response = response
        self._parser = httptools.HttpResponseParser(self)

    def end(self) -> None:
        self._response = None
        self._parser = None
        self.resume_reading()  # the last bytes may have paused it: a parked connection must read

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("upstream closed the connection")
        if self._paused_writing:
            if self._drain is None:
                self._drain = self._loop.create_future()
            await self._drain

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise _ConnectionLost(f"{self._where()} closed the connection before answering")
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def _where(self) -> str:
        scheme, host, port = self.origin
        return f"{scheme}://{host}:{port}"


class UpstreamResponse:
    """Status, headers, and the body as it arrives. `read()` gives b"" at the end; `release()` always."""

    __slots__ = (
        "_conn",
        "_error",
        "_reading_paused",
        "_sender",
        "_waiter",
        "buffered",
        "chunks",
        "close_delimited",
        "complete",
        "head_bytes",
        "headers_done",
        "keep_alive",
        "no_body",
        "raw",
        "reason",
        "status",
    )

    def __init__(self, conn: _Connection, no_body: bool) -> None:
        self._conn = conn
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._reading_paused = False
        self.no_body = no_body
        self.status = 0
        self.reason = ""
        self.raw: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.head_bytes = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.close_delimited = False

    # -- fed by the connection
    def headers_ready(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive
        self.headers_done = True
        # RFC 9112 6.3: HEAD, 204 and 304 answers have no body whatever their headers say.
        if self.no_body or status in (204, 304):
            self.complete = True
        else:
            names = {n.lower() for n, _ in self.raw}
            self.close_delimited = b"content-length" not in names and b"transfer-encoding" not in names
        self._wake()

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    def lost(self, where: str, exc: Exception | None) -> None:
        why = f": {type(exc).__name__}: {exc}" if exc else ""
        if self.headers_done:
            self.fail(UpstreamBroken(f"{where} closed the connection mid-body{why}"))
        else:
            self.fail(_ConnectionLost(f"{where} closed the connection before answering{why}"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # -- for the caller
    @property
    def at_eof(self) -> bool:
        return self.complete and not self.chunks

    def headers(self) -> CIMultiDict[str]:
        return CIMultiDict(
            (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for n, v in self.raw
        )

    async def read(self) -> bytes:
        """Whatever body bytes have arrived (waiting for some), or b"" once the body is complete."""
        while True:
            if self.chunks:
                data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks.clear()
                self.buffered = 0
                if not self.complete:
                    self._conn.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            await self._wait()

    async def _head(self) -> None:
        while not self.headers_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    def release(self) -> None:
        """Back to the pool when the exchange finished cleanly and both sides allow reuse; else closed."""
        conn = self._conn
        sent = self._sender is None or (self._sender.done() and not self._sender.cancelled())
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
        if sent and self._sender is not None and self._sender.exception() is not None:
            sent = False
        conn.end()
        reusable = (
            self.complete and self.keep_alive and sent and self._error is None and not self.close_delimited
        )
        if reusable and not conn.closed:
            conn._client._park(conn)
        else:
            conn.close()


class _ConnectionLost(UpstreamUnavailable):
    """Closed before any answer: a pooled connection the upstream had dropped; may be retried."""


class UpstreamClient:
    """Keep-alive HTTP/1.1 connections per origin, reused one request at a time."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 10.0,
        max_field_size: int = 65536,
        keepalive_s: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.max_field_size = max_field_size
        self.max_head_bytes = 4 * max_field_size
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._ssl = tls  # None: the system's CA store, built on first use
        self.connections_made = 0

    async def request(
        self,
        method: str,
        url: URL,
        headers: Iterable[tuple[str, str]],
        body: AsyncIterator[bytes] | None = None,
        *,
        serialized: bytes = b"",
    ) -> UpstreamResponse:
        """Send a request and wait for the answer's status and headers (the caller bounds the wait).

        `headers` must say how a body is framed: with Content-Length it is sent as is, otherwise it is
        sent chunked. `serialized` is more header lines, each ending in CRLF, checked by the caller.
        A connection the upstream closed while idle in the pool is retried once on a
        fresh one, for idempotent methods without a body only (nothing of the request is lost).
        """
        origin: Origin = (url.scheme, url.host or "", url.port or 80)
        head, chunked = _head(method, url, headers, body is not None, serialized)
        conn = await self._acquire(origin)
        try:
            return await self._exchange(conn, method, head, body, chunked)
        except _ConnectionLost:
            if not (conn.reused and body is None and method in _IDEMPOTENT):
                raise
        conn = await self._connect(origin)
        return await self._exchange(conn, method, head, body, chunked)

    async def _exchange(
        self, conn: _Connection, method: str, head: bytes, body: AsyncIterator[bytes] | None, chunked: bool
    ) -> UpstreamResponse:
        response = UpstreamResponse(conn, no_body=method == "HEAD")
        conn.begin(response)
        try:
            conn.write(head)
            if body is not None:
                response._sender = sender = asyncio.ensure_future(_send_body(conn, body, chunked))
                _SENDERS.add(sender)  # referenced until done, even when the response is dropped
                sender.add_done_callback(_sent)
            await response._head()
        except BaseException:
            response.release()
            raise
        return response

    async def _acquire(self, origin: Origin) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
                conn.idle_timer = None
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return await self._connect(origin)

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"{scheme}://{host}:{port}: no connection in {self._connect_timeout_s:g}s"
            ) from exc
        except OSError as exc:
            raise UpstreamUnavailable(f"{scheme}://{host}:{port}: {type(exc).__name__}: {exc}") from exc
        self._all.add(conn)
        self.connections_made += 1
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _park(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.origin, collections.deque())
        if len(idle) >= _MAX_IDLE_PER_ORIGIN:
            conn.close()
            return
        conn.idle_timer = asyncio.get_running_loop().call_later(self._keepalive_s, conn.close)
        idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.origin)
        if idle is not None:
            with contextlib.suppress(ValueError):
                idle.remove(conn)

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        self._all.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost callbacks


def _head(
    method: str, url: URL, headers: Iterable[tuple[str, str]], has_body: bool, serialized: bytes
) -> tuple[bytes, bool]:
    """The request line and headers as one block of bytes, and whether the body goes chunked."""
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1"]
    has_host = has_length = False
    for name, value in headers:
        lower = name.lower()
        if lower == "host":
            has_host = True
        elif lower == "content-length":
            has_length = True
        lines.append(f"{name}: {value}")
    if not has_host:
        lines.append(f"Host: {url.host_port_subcomponent}")
    chunked = has_body and not has_length
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    text = "\r\n".join(lines) + "\r\n"
    # Request splitting: a CR or LF inside a value would start a header or a request of its own.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise UpstreamUnavailable("a header value holds a line break; refused to send it")
    return b"%b%b\r\n" % (text.encode("utf-8", "surrogateescape"), serialized), chunked


def _sent(task: asyncio.Task[None]) -> None:
    _SENDERS.discard(task)
    if not task.cancelled():
        task.exception()  # seen: a failed send is reported by the answer read, not as a loose task error


async def _send_body(conn: _Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
    """Stream the client's body upstream, waiting for the socket to drain after each piece."""
    try:
        async for chunk in body:
            if not chunk:
                continue
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
    except BaseException:
        conn.close()  # a half-sent body leaves the connection unusable; the answer read sees it
        raise
