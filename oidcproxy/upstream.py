"""Reverse-proxy core: a pure header policy, streaming HTTP both ways, and the WebSocket pump.

Nothing from the client is trusted: hop-by-hop headers and anything named in `Connection` are
dropped, client-sent copies of our identity and forwarding headers are replaced, and the proxy's own
cookies never reach the upstream. Bodies stream without buffering. Uses aiohttp.web because it moves
bytes between two sockets; decides nothing about who may pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from oidcproxy.errors import NotFound, UpstreamTimeout, UpstreamUnavailable
from oidcproxy.model import Identity, Tokens

__all__ = [
    "HOP_BY_HOP",
    "HeaderPolicy",
    "Route",
    "Router",
    "UpstreamProxy",
    "is_websocket_upgrade",
    "strip_cookies",
    "upstream_headers",
]

log = logging.getLogger("oidcproxy.upstream")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_FORWARDING = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "forwarded", "x-real-ip"}
)
_IDENTITY = frozenset(
    {
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-forwarded-access-token",
    }
)
_WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Route:
    """Requests whose path starts with `prefix` go to `base` (scheme://host:port), path unchanged."""

    prefix: str
    base: URL

    @classmethod
    def parse(cls, url: str) -> Route:
        parsed = URL(url)
        return cls(prefix=parsed.path or "/", base=parsed.with_path("/").with_query(None))


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    def match(self, path: str) -> Route | None:
        for route in self.routes:
            if path.startswith(route.prefix) or path + "/" == route.prefix:
                return route
        return None


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    cookie_name: str = "_oidcproxy"
    pass_user_headers: bool = True
    pass_access_token: bool = False
    pass_authorization_header: bool = False
    pass_host_header: bool = True

    def identity_headers(self, identity: Identity, tokens: Tokens) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.pass_user_headers:
            out += [
                ("X-Forwarded-User", identity.user),
                ("X-Forwarded-Email", identity.email),
                ("X-Forwarded-Preferred-Username", identity.preferred_username),
            ]
            if identity.groups:
                out.append(("X-Forwarded-Groups", ",".join(identity.groups)))
        if self.pass_access_token and tokens.access_token:
            out.append(("X-Forwarded-Access-Token", tokens.access_token))
        if self.pass_authorization_header and tokens.id_token:
            out.append(("Authorization", f"Bearer {tokens.id_token}"))
        return [(k, _UNSAFE_VALUE.sub("", v)) for k, v in out if v]


def strip_cookies(header: str, cookie_name: str) -> str:
    """The Cookie header without the proxy's own cookies (session, its chunks, login cookies)."""
    prefix = cookie_name + "_"
    kept = []
    for pair in header.split(";"):
        name = pair.split("=", 1)[0].strip()
        if name and name != cookie_name and not name.startswith(prefix):
            kept.append(pair.strip())
    return "; ".join(kept)


def upstream_headers(
    incoming: Mapping[str, str] | CIMultiDictProxy[str],
    *,
    policy: HeaderPolicy,
    identity: Identity | None,
    tokens: Tokens | None,
    peer: str,
    scheme: str,
    host: str,
) -> CIMultiDict[str]:
    """What the upstream is sent: the client's headers less anything it must not decide."""
    items = incoming.items()
    drop = set(HOP_BY_HOP) | _FORWARDING | _IDENTITY
    for value in getattr(incoming, "getall", lambda *_: [])("Connection", ()):
        drop.update(t.strip().lower() for t in value.split(","))
    if policy.pass_authorization_header:
        drop.add("authorization")
    if not policy.pass_host_header:
        drop.add("host")
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in items:
        lower = key.lower()
        if lower in drop:
            continue
        if lower == "cookie":
            value = strip_cookies(value, policy.cookie_name)
            if not value:
                continue
        out.add(key, value)
    out.update({"X-Forwarded-For": peer, "X-Forwarded-Proto": scheme, "X-Forwarded-Host": host})
    if identity is not None and tokens is not None:
        out.extend(policy.identity_headers(identity, tokens))
    return out


def is_websocket_upgrade(headers: Mapping[str, str]) -> bool:
    return headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in headers.get(
        "Connection", ""
    ).lower().replace(" ", "").split(",")


def _response_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    drop = set(HOP_BY_HOP)
    for value in headers.getall("Connection", ()):
        drop.update(t.strip().lower() for t in value.split(","))
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


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
    ) -> None:
        self.router = router
        self.policy = policy
        self._response_timeout_s = response_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_field_size = max_field_size
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=512, keepalive_timeout=30)
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            max_field_size=self._max_field_size,
            max_line_size=self._max_field_size,
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def handle(
        self, request: web.Request, identity: Identity | None, tokens: Tokens | None
    ) -> web.StreamResponse:
        route = self.router.match(request.path)
        if route is None:
            raise NotFound(f"no --upstream serves {request.path}")
        headers = upstream_headers(
            request.headers,
            policy=self.policy,
            identity=identity,
            tokens=tokens,
            peer=request.remote or "",
            scheme=request.scheme,
            host=request.host,
        )
        url = route.base.join(URL(request.raw_path, encoded=True))
        if is_websocket_upgrade(request.headers):
            return await self._websocket(request, url, headers)
        return await self._http_request(request, url, headers)

    async def _http_request(
        self, request: web.Request, url: URL, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        assert self._http is not None  # noqa: S101 - started by the app's cleanup context
        body = request.content.iter_chunked(65536) if request.body_exists else None
        try:
            async with asyncio.timeout(self._response_timeout_s):
                upstream = await self._http.request(
                    request.method, url, headers=headers, data=body, allow_redirects=False
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{url.origin()} gave no answer in {self._response_timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"{url.origin()}: {type(exc).__name__}: {exc}") from exc
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.extend(_response_headers(upstream.headers))
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            log.info("stream to or from %s ended early: %s", url.origin(), type(exc).__name__)
            raise
        finally:
            upstream.release()

    async def _websocket(
        self, request: web.Request, url: URL, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        assert self._http is not None  # noqa: S101 - started by the app's cleanup context
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        for name in _WS_HANDSHAKE:
            headers.popall(name, None)
        ws_url = url.with_scheme("wss" if url.scheme == "https" else "ws")
        try:
            async with asyncio.timeout(self._response_timeout_s):
                upstream = await self._http.ws_connect(
                    ws_url, headers=headers, protocols=offered, max_msg_size=0, autoping=True
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{url.origin()} websocket handshake timed out") from exc
        except aiohttp.WSServerHandshakeError as exc:
            raise UpstreamUnavailable(f"{url.origin()} refused the websocket: {exc.status}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"{url.origin()}: {type(exc).__name__}: {exc}") from exc
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0, autoping=True
        )
        try:
            await client.prepare(request)
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(client, upstream), name="ws-client-to-upstream")
                group.create_task(_pump(upstream, client), name="ws-upstream-to-client")
        finally:
            await upstream.close()
            await client.close()
        return client


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Copy messages one way; when the source closes, close the sink with the same code."""
    async for msg in source:
        if msg.type is WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type is WSMsgType.ERROR:
            break
    code = source.close_code or 1000
    with contextlib.suppress(ConnectionError, RuntimeError):
        await sink.close(code=code if 1000 <= code < 5000 else 1011)
