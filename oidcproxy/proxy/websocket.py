"""The WebSocket relay: the upstream handshake, then raw bytes both ways and a watchdog per socket.

After both handshakes the two sockets are joined by asyncio protocol callbacks: frames pass untouched
(pings, pongs, close codes and per-message-deflate, which the browser and the upstream negotiate with
each other), a socket that cannot take more pauses reading from the other, and no task, buffer or
parsed WebSocket object is held per socket. `frames.FrameTracker` only follows frame boundaries, so
that the watchdog can put a close frame between two frames: 1008 to the browser (1001 to the
upstream) when the session behind the socket ends or is revoked, 1001 when it sat idle or the server
shuts down (`Relays.going_away`).
Uses aiohttp.web for the browser's 101; imports errors, model, aiohttp_internals and the rest of proxy.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from oidcproxy.aiohttp_internals import take_transport
from oidcproxy.errors import BadRequest, UpstreamTimeout, UpstreamUnavailable
from oidcproxy.model import Clock
from oidcproxy.proxy.client import UpstreamClient
from oidcproxy.proxy.connection import UpstreamResponse
from oidcproxy.proxy.frames import FrameTracker, accept_value, close_frame, valid_key

__all__ = ["GOING_AWAY", "POLICY_VIOLATION", "Relays", "WebSocketTimeouts", "connect", "relay"]

log = logging.getLogger("oidcproxy.upstream")

_HANDSHAKE = ("sec-websocket-key", "sec-websocket-version", "sec-websocket-accept")
_NEGOTIATED = ("Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions")  # the endpoints' own choice
POLICY_VIOLATION = 1008
GOING_AWAY = 1001
_BROKEN = 1011  # the other side vanished without a close frame
_CLOSE_WAIT_S = 10.0  # after our close frames, how long each side has to answer (aiohttp's default)


@dataclass(frozen=True, slots=True)
class WebSocketTimeouts:
    handshake_s: float = 10.0
    idle_s: float = 0.0  # 0: no idle limit
    session_check_s: float = 15.0


async def connect(
    client: UpstreamClient,
    request: web.Request,
    url: URL,
    headers: CIMultiDict[str],
    timeouts: WebSocketTimeouts,
) -> UpstreamResponse:
    """The upstream's 101 to the browser's offer (subprotocols, extensions); faults as ProxyErrors.

    The key is our own (a nonce per hop, RFC 6455 4.1); the browser's is checked here, before any
    upstream connection is made, since its 101 is ours to send.
    """
    if request.headers.get("Sec-WebSocket-Version") != "13" or not valid_key(
        request.headers.get("Sec-WebSocket-Key", "")
    ):
        raise BadRequest("a WebSocket upgrade without a valid Sec-WebSocket-Key or version 13")
    for name in (*_HANDSHAKE, *_NEGOTIATED):
        headers.popall(name, None)
    key = base64.b64encode(os.urandom(16)).decode()
    headers.extend((("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key)))
    headers["Sec-WebSocket-Version"] = "13"
    for name in _NEGOTIATED:
        headers.extend((name, value) for value in request.headers.getall(name, ()))
    try:
        async with asyncio.timeout(timeouts.handshake_s):
            upstream = await client.upgrade(url, headers.items())
    except TimeoutError as exc:
        raise UpstreamTimeout(
            f"{url.origin()} websocket handshake took over {timeouts.handshake_s:g}s"
        ) from exc
    answer = upstream.headers()
    if upstream.status != 101:
        upstream.connection.close()
        raise UpstreamUnavailable(f"{url.origin()} refused the websocket: {upstream.status}")
    if answer.get("Sec-WebSocket-Accept") != accept_value(key):
        upstream.connection.close()
        raise UpstreamUnavailable(f"{url.origin()} answered 101 without a valid Sec-WebSocket-Accept")
    return upstream


class Relays:
    """The open relays of one proxy, so that its shutdown can close them; each leaves when it ends.
    `counted(+1 / -1)` hears each one start and end (the metrics' open WebSockets)."""

    __slots__ = ("_counted", "_open")

    def __init__(self, counted: Callable[[int], None] = lambda _: None) -> None:
        self._open: set[_Relay] = set()
        self._counted = counted

    def __len__(self) -> int:
        return len(self._open)

    def add(self, relay: _Relay) -> None:
        self._open.add(relay)
        self._counted(1)

    def discard(self, relay: _Relay) -> None:
        if relay in self._open:
            self._open.remove(relay)
            self._counted(-1)

    def going_away(self) -> int:
        """The server is shutting down: 1001 both ways (RFC 6455 7.4.1), each side given its time to
        answer; answers how many were open."""
        open_now = [one for one in self._open if not one.ending]
        for one in open_now:
            one.end(GOING_AWAY, b"server shutting down")
        return len(open_now)

    def close_all(self) -> None:
        for one in list(self._open):
            one.shut_down()


async def relay(
    request: web.Request,
    upstream: UpstreamResponse,
    timeouts: WebSocketTimeouts,
    clock: Clock,
    expires_at: float | None,
    relays: Relays,
    alive: Callable[[], bool] | None = None,
) -> web.StreamResponse:
    """Send the browser its 101 with what the upstream chose, then join the two sockets and return:
    the handler's task ends here, the relay lives on in protocol callbacks and one timer."""
    conn = upstream.connection
    try:
        response = web.StreamResponse(status=101, reason="Switching Protocols")
        response.headers["Upgrade"] = "websocket"
        response.headers["Connection"] = "Upgrade"
        response.headers["Sec-WebSocket-Accept"] = accept_value(request.headers["Sec-WebSocket-Key"])
        chosen = upstream.headers()
        for name in _NEGOTIATED:
            if name in chosen:
                response.headers[name] = ", ".join(chosen.getall(name))
        await response.prepare(request)
        transport, tail = take_transport(request)
    except BaseException:
        conn.close()
        raise
    assert conn.transport is not None  # noqa: S101 - a 101 came through it
    _Relay(relays, timeouts, clock, expires_at, alive).join(transport, tail, conn.transport, upstream.tail)
    return response


class _Side(asyncio.Protocol):
    """One of the two sockets: what it sends goes to `peer`, and when it cannot take more, `peer`
    stops being read (back-pressure with the transports' own water marks)."""

    __slots__ = ("forwarding", "frames", "masked", "peer", "relay", "transport")

    def __init__(self, relay: _Relay, transport: asyncio.Transport, masked: bool) -> None:
        self.relay = relay
        self.transport = transport
        self.masked = masked  # frames we write to it are masked: it is the upstream, we its client
        self.frames = FrameTracker()  # what it sends
        self.forwarding = True  # its frames still go to its peer (until we closed towards the peer)
        self.peer: _Side = self

    def data_received(self, data: bytes) -> None:
        self.relay.received(self, data)

    def eof_received(self) -> bool:
        return False  # a half-closed WebSocket is a closed one: close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.lost(self)

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()

    def say_close(self, code: int, reason: bytes) -> None:
        """Our own close frame to this side; nothing of its peer's follows it. If this side had sent
        its close already, that ends its closing handshake (RFC 6455 7.1.1): its socket is closed."""
        self.peer.forwarding = False
        if self.transport.is_closing():
            return  # uvloop refuses writes to a closed transport
        self.transport.write(close_frame(code, reason, os.urandom(4) if self.masked else None))
        if self.frames.closed:
            self.transport.close()


class _Relay:
    """The two sides of one proxied WebSocket and its watchdog: one timer callback, re-armed, that
    closes both sides when the session behind the socket ends or `alive()` says it was revoked (1008),
    or when no byte went either way for idle_s (1001)."""

    __slots__ = (
        "_alive",
        "_client",
        "_clock",
        "_code",
        "_expires_at",
        "_handle",
        "_loop",
        "_reason",
        "_relays",
        "_timeouts",
        "_upstream",
        "ending",
        "last",
    )

    def __init__(
        self,
        relays: Relays,
        timeouts: WebSocketTimeouts,
        clock: Clock,
        expires_at: float | None,
        alive: Callable[[], bool] | None,
    ) -> None:
        self._relays, self._timeouts, self._clock = relays, timeouts, clock
        self._expires_at, self._alive = expires_at, alive
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        self.ending = False
        self._code, self._reason = GOING_AWAY, b""
        self._handle: asyncio.TimerHandle | None = None

    def join(
        self, client: asyncio.Transport, client_tail: bytes, upstream: asyncio.Transport, tail: bytes
    ) -> None:
        self._client = _Side(self, client, masked=False)
        self._upstream = _Side(self, upstream, masked=True)
        self._client.peer, self._upstream.peer = self._upstream, self._client
        self._relays.add(self)
        client.set_protocol(self._client)
        upstream.set_protocol(self._upstream)
        self._arm()
        for side, early in ((self._client, client_tail), (self._upstream, tail)):
            if early:
                self.received(side, early)
        for side in (self._client, self._upstream):
            if side.transport.is_closing():
                self.lost(side)  # gone while it changed hands: its connection_lost went to the old protocol
            else:
                side.transport.resume_reading()

    # -- the sockets' callbacks
    def received(self, src: _Side, data: bytes) -> None:
        self.last = self._loop.time()
        sink = src.peer.transport
        if src.forwarding and not self.ending and not sink.is_closing():
            sink.write(data)
            src.frames.feed(data)
            return
        if sink.is_closing():
            src.forwarding = False  # the peer is gone (uvloop refuses writes to a closed transport)
        if src.forwarding:  # we are ending: the frame under way may finish, then our close follows
            taken = src.frames.feed(data, stop_at_boundary=True)
            if taken:
                sink.write(data[:taken])
            if not src.frames.at_boundary:
                return
            src.peer.say_close(*self._codes(src.peer))
            data = data[taken:]
        # We closed towards src's peer: read src only for its answer to our close.
        src.frames.feed(data)
        if src.frames.closed and src.frames.at_boundary and not src.peer.forwarding:
            src.transport.close()

    def lost(self, side: _Side) -> None:
        peer = side.peer
        if not peer.transport.is_closing() and (side.forwarding or not self.ending):
            # Else we are ending and closed towards the peer: its answer or the deadline closes it.
            if side.forwarding and side.frames.at_boundary and not side.frames.closed and not self.ending:
                peer.say_close(_BROKEN, b"")
            peer.transport.close()  # after what is still buffered for it, within the deadline
            self._deadline()
        if side.transport.is_closing() and peer.transport.is_closing():
            self._finish()

    # -- the watchdog
    def _arm(self) -> None:
        idle = self._timeouts.idle_s
        wait = self._timeouts.session_check_s if self._expires_at is not None else 3600.0
        if idle > 0:
            wait = min(wait, max(0.0, self.last + idle - self._loop.time()))
        self._handle = self._loop.call_later(wait, self._check)

    def _check(self) -> None:
        self._handle = None
        idle = self._timeouts.idle_s
        if self._expires_at is not None and self._clock() >= self._expires_at:
            log.info("closing a websocket: the session behind it expired")
            self.end(POLICY_VIOLATION, b"session expired")
        elif self._alive is not None and not self._alive():
            log.info("closing a websocket: the session behind it was revoked")
            self.end(POLICY_VIOLATION, b"session revoked")
        elif idle > 0 and self._loop.time() - self.last >= idle:
            log.info("closing a websocket idle for %gs", idle)
            self.end(GOING_AWAY, b"idle timeout")
        else:
            self._arm()

    def end(self, code: int, reason: bytes) -> None:
        """Close both sides: each gets our close frame once the frame it is being sent has ended, and
        _CLOSE_WAIT_S to answer it before its socket is cut."""
        self.ending, self._code, self._reason = True, code, reason
        for side in (self._client, self._upstream):
            if side.peer.forwarding and side.peer.frames.at_boundary:
                side.say_close(*self._codes(side))
        self._deadline()

    def _codes(self, side: _Side) -> tuple[int, bytes]:
        # The upstream gets 1001 (going away) where the browser gets 1008: the policy decision is ours,
        # and the upstream did nothing wrong (RFC 6455 7.4.1).
        if side is self._upstream and self._code == POLICY_VIOLATION:
            return GOING_AWAY, self._reason
        return self._code, self._reason

    def _deadline(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_later(_CLOSE_WAIT_S, self._cut)

    def _cut(self) -> None:
        """A side never answered our close, or never read what was left for it: drop both sockets."""
        self._handle = None
        for side in (self._client, self._upstream):
            side.transport.abort()
        self._finish()

    def shut_down(self) -> None:
        """The proxy stops: a close frame (1001) to each side that is between frames, then its socket."""
        self.ending = True
        for side in (self._client, self._upstream):
            if not side.transport.is_closing():
                if side.peer.forwarding and side.peer.frames.at_boundary:
                    side.say_close(*self._codes(side))
                side.transport.close()
        self._finish()

    def _finish(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._relays.discard(self)
