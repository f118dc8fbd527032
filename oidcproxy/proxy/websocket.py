"""The WebSocket relay: the upstream handshake, a pump each way, and a watchdog per socket.

Messages are copied one at a time with back-pressure both ways; pings, pongs and close codes pass
through. The watchdog closes both sides when the session behind the socket ends or is revoked (1008),
it sat idle (1001) or the server shuts down (1001, `UpstreamProxy.going_away`). Uses aiohttp (web and
client WebSockets); imports errors and model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from oidcproxy.errors import UpstreamTimeout, UpstreamTlsFailed, UpstreamUnavailable
from oidcproxy.model import Clock
from oidcproxy.proxy.tls import describe_tls_failure

__all__ = ["GOING_AWAY", "POLICY_VIOLATION", "WebSocketTimeouts", "Watchdog", "connect", "relay"]

log = logging.getLogger("oidcproxy.upstream")

_WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)
# Close codes an endpoint may send (RFC 6455 7.4.1-7.4.2); 1005/1006/1015 only ever describe a close.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
POLICY_VIOLATION = 1008
GOING_AWAY = 1001


@dataclass(frozen=True, slots=True)
class WebSocketTimeouts:
    handshake_s: float = 10.0
    idle_s: float = 0.0  # 0: no idle limit
    session_check_s: float = 15.0


async def connect(
    http: aiohttp.ClientSession,
    request: web.Request,
    url: URL,
    headers: CIMultiDict[str],
    timeouts: WebSocketTimeouts,
) -> aiohttp.ClientWebSocketResponse:
    """The upstream side of the socket, offered the browser's subprotocols; faults as ProxyErrors."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    for name in _WS_HANDSHAKE:
        headers.popall(name, None)
    ws_url = url.with_scheme("wss" if url.scheme == "https" else "ws")
    try:
        async with asyncio.timeout(timeouts.handshake_s):
            return await http.ws_connect(
                ws_url, headers=headers, protocols=offered, max_msg_size=0, autoping=False
            )
    except TimeoutError as exc:
        raise UpstreamTimeout(
            f"{url.origin()} websocket handshake took over {timeouts.handshake_s:g}s"
        ) from exc
    except aiohttp.WSServerHandshakeError as exc:
        raise UpstreamUnavailable(f"{url.origin()} refused the websocket: {exc.status}") from exc
    except aiohttp.ClientSSLError as exc:
        cause = (
            exc.certificate_error
            if isinstance(exc, aiohttp.ClientConnectorCertificateError)
            else exc.os_error
        )
        raise UpstreamTlsFailed(f"{url.origin()}: {describe_tls_failure(cause)}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"{url.origin()}: {type(exc).__name__}: {exc}") from exc


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientWebSocketResponse,
    timeouts: WebSocketTimeouts,
    clock: Clock,
    expires_at: float | None,
    closing: set[asyncio.Future[bool]],
    alive: Callable[[], bool] | None = None,
    open_sockets: set[Watchdog] | None = None,
) -> web.StreamResponse:
    """Answer the browser's upgrade and pump both ways until either side closes or the watchdog ends it.

    `closing` (the proxy's) holds each close still being sent, so a cancelled pump does not drop it;
    `open_sockets` (the proxy's) holds the watchdog of each open socket, for `going_away` at shutdown.
    """
    # autoping off both ways: pings and pongs are the endpoints' to answer, so they pass through.
    client = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0, autoping=False
    )
    activity = _Activity(asyncio.get_running_loop().time())
    try:
        await client.prepare(request)
        async with asyncio.TaskGroup() as group:
            pumps = [
                group.create_task(_pump(client, upstream, activity, closing), name="ws-client-to-upstream"),
                group.create_task(_pump(upstream, client, activity, closing), name="ws-upstream-to-client"),
            ]
            watch = Watchdog(timeouts, clock, group, client, upstream, activity, expires_at, alive)
            live = open_sockets if open_sockets is not None else set()
            live.add(watch)
            try:
                await asyncio.wait(pumps)
            finally:
                live.discard(watch)
                watch.cancel()  # if it is closing both sides, that task is the group's: it finishes
    finally:
        await upstream.close()
        await client.close()
    return client


class Watchdog:
    """Closes both sides when the session behind the socket ends or `alive()` says it was revoked
    (1008), when it sat idle (1001), or when the server is going away (`going_away`, 1001).

    A timer callback rather than a task per socket: 10,000 idle WebSockets held 10,000 sleeping tasks.
    Only when it fires for good does it start a task (in the socket's TaskGroup) to close both sides.
    """

    __slots__ = (
        "_activity",
        "_alive",
        "_client",
        "_clock",
        "_expires_at",
        "_group",
        "_handle",
        "_loop",
        "_upstream",
        "_ws",
    )

    def __init__(
        self,
        ws: WebSocketTimeouts,
        clock: Clock,
        group: asyncio.TaskGroup,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
        activity: _Activity,
        expires_at: float | None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self._ws, self._clock, self._group = ws, clock, group
        self._client, self._upstream, self._activity = client, upstream, activity
        self._expires_at, self._alive = expires_at, alive
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        idle = self._ws.idle_s
        wait = self._ws.session_check_s if self._expires_at is not None else 3600.0
        if idle > 0:
            wait = min(wait, max(0.0, self._activity.last + idle - self._loop.time()))
        self._handle = self._loop.call_later(wait, self._check)

    def _check(self) -> None:
        self._handle = None
        idle = self._ws.idle_s
        if self._expires_at is not None and self._clock() >= self._expires_at:
            log.info("closing a websocket: the session behind it expired")
            self._end(POLICY_VIOLATION, b"session expired")
        elif self._alive is not None and not self._alive():
            log.info("closing a websocket: the session behind it was revoked")
            self._end(POLICY_VIOLATION, b"session revoked")
        elif idle > 0 and self._loop.time() - self._activity.last >= idle:
            log.info("closing a websocket idle for %gs", idle)
            self._end(1001, b"idle timeout")
        else:
            self._arm()

    def going_away(self) -> None:
        """The server is shutting down: both sides get 1001 (RFC 6455 7.4.1), as browsers expect."""
        if not self._activity.ending:
            self.cancel()
            self._end(GOING_AWAY, b"server shutting down")

    def _end(self, code: int, why: bytes) -> None:
        self._activity.ending = True
        self._group.create_task(_close_both(self._client, self._upstream, code, why), name="ws-close")

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _Activity:
    """When a message last went either way (loop time), for the idle timeout; and whether the
    watchdog is ending the socket, so the pumps leave the close codes to it."""

    __slots__ = ("ending", "last")

    def __init__(self, now: float) -> None:
        self.last = now
        self.ending = False


async def _close_both(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, code: int, why: bytes
) -> None:
    """Both at once, so a browser slow to answer its close does not hold the upstream's.

    The upstream gets 1001 (going away) where the browser gets 1008: the policy decision is ours, and
    the upstream did nothing wrong (RFC 6455 7.4.1).
    """

    async def close(side: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, code: int) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await side.close(code=code, message=why)

    await asyncio.gather(close(client, code), close(upstream, 1001 if code == POLICY_VIOLATION else code))


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    activity: _Activity,
    closing: set[asyncio.Future[bool]],
) -> None:
    """Copy messages one way; when the source closes, close the sink with the same code and reason.

    Each send waits for the sink's transport to drain (aiohttp's writer does), and nothing is read
    from the source meanwhile, so a slow reader slows the writer instead of growing a buffer here.
    """
    loop = asyncio.get_running_loop()
    reason = b""
    while True:
        msg = await source.receive()
        activity.last = loop.time()
        try:
            if msg.type is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                await sink.ping(msg.data)
            elif msg.type is WSMsgType.PONG:
                await sink.pong(msg.data)
            else:
                if msg.type is WSMsgType.CLOSE and isinstance(msg.extra, str):
                    reason = msg.extra.encode()[:123]
                break
        except (ConnectionError, RuntimeError):
            break
    if activity.ending:
        return  # the watchdog closes both sides, each with its own code
    # The peer's own code: after autoclose answers it, `close_code` may hold our reply instead.
    code = msg.data if msg.type is WSMsgType.CLOSE else source.close_code
    if code is None or (code not in _SENDABLE and not 3000 <= code < 5000):
        code = 1000 if msg.type is WSMsgType.CLOSE else 1011
    # Shielded: the browser hanging up right after its close frame cancels this handler, and the
    # upstream must still be told the browser's code rather than a bare 1000 from the cleanup.
    close = asyncio.ensure_future(sink.close(code=code, message=reason))
    closing.add(close)  # referenced until done, so a cancelled pump does not drop it
    close.add_done_callback(closing.discard)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await asyncio.shield(close)
