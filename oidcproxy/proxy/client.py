"""A lean HTTP/1.1 client for proxied requests: a keep-alive pool per origin, one write per request head,
responses parsed by llhttp (httptools, in `connection`) and handed out chunk by chunk with
back-pressure both ways.

Used by `http` for plain requests and by `websocket` for the upgrade handshake (`upgrade`: a fresh
connection, handed over after its 101). Knows nothing of sessions or header policy: it sends the
headers it is given. Imports only errors.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable

from yarl import URL

from oidcproxy.errors import UpstreamTimeout, UpstreamTlsFailed, UpstreamUnavailable
from oidcproxy.proxy.connection import Origin, UpstreamResponse, _Connection, _ConnectionLost
from oidcproxy.proxy.tls import describe_tls_failure

__all__ = ["UpstreamClient"]

# RFC 9110 9.2.2: a request with one of these methods may be sent again when the connection died
# before any answer came back.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_MAX_IDLE_PER_ORIGIN = 1024


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
        self._senders: set[asyncio.Task[None]] = set()  # request bodies still being sent
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

    async def upgrade(self, url: URL, headers: Iterable[tuple[str, str]]) -> UpstreamResponse:
        """Send an upgrade request (a GET, no body) on a connection of its own and wait for the answer.

        On a 101 the connection is the caller's from then on: out of the pool, reading paused, and
        `response.tail` holding what came right behind the 101. Any other answer is a plain response.
        """
        origin: Origin = (url.scheme, url.host or "", url.port or 80)
        head, _ = _head("GET", url, headers, False, b"")
        conn = await self._connect(origin)
        self._all.discard(conn)  # held for the socket's lifetime, closed by its owner
        response = UpstreamResponse(conn, no_body=False)
        conn.begin(response, upgrade=True)
        try:
            conn.write(head)
            await response._head()
        except BaseException:
            conn.close()
            raise
        return response

    async def _exchange(
        self, conn: _Connection, method: str, head: bytes, body: AsyncIterator[bytes] | None, chunked: bool
    ) -> UpstreamResponse:
        response = UpstreamResponse(conn, no_body=method == "HEAD")
        conn.begin(response)
        try:
            conn.write(head)
            if body is not None:
                response._sender = sender = asyncio.ensure_future(_send_body(conn, body, chunked))
                self._senders.add(sender)  # referenced until done, even when the response is dropped
                sender.add_done_callback(self._sent)
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
        except ssl.SSLError as exc:
            raise UpstreamTlsFailed(f"{scheme}://{host}:{port}: {describe_tls_failure(exc)}") from exc
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

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._senders.discard(task)
        if not task.cancelled():
            task.exception()  # seen: a failed send is reported by the answer read, not as a loose task error


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
