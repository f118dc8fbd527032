"""One kept-alive HTTP/1.1 connection to an upstream and the response it carries.

`_Connection` is the asyncio protocol: llhttp (httptools) parses the answer, and the body is handed
out chunk by chunk through `UpstreamResponse`, pausing the socket above a high-water mark. Faults
after the answer began raise `UpstreamBroken`; a connection closed before any answer raises
`_ConnectionLost`, which the pool (`client`) may retry. Imports only errors.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any, cast

import httptools
from multidict import CIMultiDict

from oidcproxy.errors import UpstreamBroken, UpstreamUnavailable

if TYPE_CHECKING:
    from oidcproxy.proxy.client import UpstreamClient

__all__ = ["Origin", "UpstreamResponse"]

_MAX_HEADERS = 128  # aiohttp's client default, kept from before this client existed
_HIGH_WATER = 256 * 1024  # body bytes queued from the upstream before we stop reading its socket
_LOW_WATER = 64 * 1024


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
        self._upgrade = False  # a WebSocket handshake: a 101 ends our part, the relay takes the socket

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
        except httptools.HttpParserUpgrade as switched:
            if self._upgrade and response.status == 101 and self.transport is not None:
                # The bytes after the 101 are the upstream's first frames: the relay's, as is the socket.
                response.tail = data[switched.args[0] :]
                self.transport.pause_reading()
                self._parser = None
                return
            response.fail(UpstreamUnavailable(f"{self._where()}: unexpected protocol switch"))
            self.close()
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, UpstreamUnavailable):
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
            if status == 101 and self._upgrade:
                response.headers_ready(status, False)
                return
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
    def begin(self, response: UpstreamResponse, *, upgrade: bool = False) -> None:
        self._response = response
        self._parser = httptools.HttpResponseParser(self)
        self._upgrade = upgrade

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
        "tail",
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
        self.tail = b""  # after a 101: what the upstream sent right behind it

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
    def connection(self) -> _Connection:
        return self._conn

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
