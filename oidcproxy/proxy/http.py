"""UpstreamProxy: streams a request to its route's upstream and the answer back, without buffering.

Plain HTTP goes through our own client (`client`); so does a WebSocket's handshake, and then the raw
relay in `websocket` joins the two sockets. Uses aiohttp.web because it moves bytes between two
sockets; decides nothing about who may pass (the gate did) nor which headers go (`headers` did). An
injected `ProxyObserver` hears what happened (the web layer's metrics). Imports config, errors, model,
aiohttp_internals (one private aiohttp switch) and the rest of `proxy`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from oidcproxy.aiohttp_internals import BufferedHeadersResponse
from oidcproxy.errors import NotFound, ResponseCut, UpstreamTimeout, UpstreamUnavailable
from oidcproxy.model import Clock, Identity, Tokens, system_clock
from oidcproxy.proxy.client import UpstreamClient
from oidcproxy.proxy.headers import (
    HeaderCaches,
    HeaderPolicy,
    is_websocket_upgrade,
    response_headers,
    upstream_headers,
)
from oidcproxy.proxy.routes import Route, Router, upstream_url
from oidcproxy.proxy.websocket import Relays, WebSocketTimeouts, connect, relay

__all__ = ["UPSTREAM", "ProxyObserver", "UpstreamProxy", "View"]

# The route a request was sent to (for the access log): set before the upstream is called.
UPSTREAM = web.RequestKey("upstream", Route)
# (scheme, host, X-Forwarded-For, request id) to tell the upstream: the request as the browser made it.
View = Callable[[web.Request], tuple[str, str, str, str]]


class ProxyObserver(Protocol):
    """Told what the proxy saw; called on the hot path, so it must be cheap and never raise."""

    def upstream_answered(self, seconds: float) -> None:
        """The upstream's response headers arrived `seconds` after the request went out."""

    def upstream_cut(self, side: str) -> None:
        """A response was cut after its status line: `side` "upstream" or "client" failed."""

    def websockets_open(self, delta: int) -> None:
        """+1 when a WebSocket relay starts, -1 when it ends."""


class _Unobserved:
    def upstream_answered(self, seconds: float) -> None:
        pass

    def upstream_cut(self, side: str) -> None:
        pass

    def websockets_open(self, delta: int) -> None:
        pass


def _direct_view(request: web.Request) -> tuple[str, str, str, str]:
    return request.scheme, request.host, request.remote or "", ""


class UpstreamProxy:
    """Streams a request to its route's upstream and the answer back; owns the connection pool."""

    def __init__(
        self,
        router: Router,
        policy: HeaderPolicy,
        *,
        response_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_field_size: int = 65536,
        view: View = _direct_view,
        websocket: WebSocketTimeouts = WebSocketTimeouts(),
        clock: Clock = system_clock,
        tls: ssl.SSLContext | None = None,
        observer: ProxyObserver | None = None,
    ) -> None:
        """`tls`: the one context for https and wss upstreams (proxy.tls); None: the system store."""
        self.router = router
        self._observer: ProxyObserver = observer or _Unobserved()
        self.policy = policy
        self._response_timeout_s = response_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_field_size = max_field_size
        self._view = view
        self._ws = websocket
        self._clock = clock
        self._tls = tls if tls is not None else ssl.create_default_context()
        self._client = UpstreamClient(
            connect_timeout_s=connect_timeout_s, max_field_size=max_field_size, tls=self._tls
        )
        self._caches = HeaderCaches()
        self.websockets = Relays(self._observer.websockets_open)  # the open ones
        # Responses cut after their status line was sent, by who failed: "upstream" or "client".
        self.cut: collections.Counter[str] = collections.Counter()

    async def start(self) -> None:
        """Nothing to open ahead: connections are made on demand (kept for the app's cleanup context)."""

    def going_away(self) -> int:
        """Shutdown: every open WebSocket gets 1001 both ways; answers how many were open."""
        return self.websockets.going_away()

    async def close(self) -> None:
        self.websockets.close_all()
        await self._client.close()

    async def handle(
        self,
        request: web.Request,
        identity: Identity | None,
        tokens: Tokens | None,
        *,
        expires_at: float | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> web.StreamResponse:
        """Proxy `request`; a WebSocket is closed with 1008 once `expires_at` (the session's end) passes
        or `alive()` answers False (the session was revoked), checked every session_check_s."""
        route = self.router.match(request.path)
        if route is None:
            raise NotFound(f"no --upstream serves {request.path}")
        request[UPSTREAM] = route
        scheme, host, forwarded_for, request_id = self._view(request)
        websocket = is_websocket_upgrade(request.headers)
        # Plain HTTP: the identity headers go out as bytes serialised once per session (below).
        headers = upstream_headers(
            request.headers,
            policy=self.policy,
            identity=identity if websocket else None,
            tokens=tokens if websocket else None,
            peer=forwarded_for,
            scheme=scheme,
            host=host,
            caches=self._caches,
            request_id=request_id,
        )
        url = upstream_url(route.base, request.raw_path)
        if websocket:
            upstream = await connect(self._client, request, url, headers, self._ws)
            return await relay(request, upstream, self._ws, self._clock, expires_at, self.websockets, alive)
        block = b""
        if identity is not None and tokens is not None:
            block = self._caches.identity.block(self.policy, identity, tokens)
        return await self._http_request(request, url, headers, block)

    async def _http_request(
        self, request: web.Request, url: URL, headers: CIMultiDict[str], identity: bytes = b""
    ) -> web.StreamResponse:
        # Our own HTTP/1.1 client (upstream_client): aiohttp's ClientSession machinery was ~30 % of a
        # proxied GET under py-spy. Body framing follows the client's: Content-Length if it sent one.
        body = request.content.iter_chunked(65536) if request.body_exists else None
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(self._response_timeout_s):
                upstream = await self._client.request(
                    request.method, url, headers.items(), body, serialized=identity
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{url.origin()} gave no answer in {self._response_timeout_s:g}s") from exc
        self._observer.upstream_answered(time.perf_counter() - sent)
        relayed = 0
        try:
            # Status line and headers leave with the first body chunk: one write for a small answer.
            response = BufferedHeadersResponse(status=upstream.status, reason=upstream.reason or None)
            response.headers.extend(response_headers(upstream.headers()))
            await response.prepare(request)
            chunk = await upstream.read()
            while not upstream.at_eof:
                await response.write(chunk)  # waits for the client to drain: a slow reader slows us
                relayed += len(chunk)
                chunk = await upstream.read()
            await response.write_eof(chunk)  # the last piece and the end in one write
            return response
        # From here on the status line may have gone: errors become ResponseCut, which the middleware
        # answers by cutting the connection, never with a second response.
        except UpstreamUnavailable as exc:  # UpstreamBroken among them
            raise self._cut(
                "upstream", f"upstream {url.origin()} failed after {relayed} bytes: {exc}"
            ) from exc
        except ConnectionError as exc:
            raise self._cut("client", f"client left after {relayed} bytes from {url.origin()}") from exc
        finally:
            upstream.release()

    def _cut(self, side: str, detail: str) -> ResponseCut:
        self.cut[side] += 1
        self._observer.upstream_cut(side)
        return ResponseCut(detail)
