"""Reverse-proxy core: a pure header policy, streaming HTTP both ways, and the WebSocket pump.

Nothing from the client is trusted: hop-by-hop headers and anything named in `Connection` are
dropped, client-sent copies of the headers we own (`owned_header`: identity, forwarding, every
X-Auth-Request-*, Authorization when we send one) are removed in any spelling (case, `_` for `-`)
before ours are added, and the proxy's own cookies never reach the upstream. Only origin-form targets
are joined to a route (`upstream_url`), so no request names another host. Bodies stream without
buffering. Uses aiohttp.web because it moves bytes between two sockets; decides nothing about who may
pass.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from oidcproxy.config import Settings
from oidcproxy.errors import BadRequest, NotFound, ResponseCut, UpstreamTimeout, UpstreamUnavailable
from oidcproxy.model import Clock, Identity, Tokens, system_clock
from oidcproxy.upstream_client import UpstreamBroken, UpstreamClient

__all__ = [
    "HOP_BY_HOP",
    "OWNED_HEADERS",
    "Bearer",
    "HeaderPolicy",
    "Route",
    "Router",
    "UpstreamProxy",
    "View",
    "WebSocketTimeouts",
    "auth_request_headers",
    "is_websocket_upgrade",
    "owned_header",
    "strip_cookies",
    "upstream_headers",
    "upstream_url",
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
# Headers the proxy owns: what it sets itself, so a client's copy must never reach the upstream.
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
_AUTH_REQUEST_PREFIX = "x-auth-request-"  # all of them: the names /oauth2/auth answers NGINX with
OWNED_HEADERS = _FORWARDING | _IDENTITY
_DROP = HOP_BY_HOP | OWNED_HEADERS
_DROP_WITH_AUTHORIZATION = _DROP | {"authorization"}
_WS_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f]")
# Close codes an endpoint may send (RFC 6455 7.4.1-7.4.2); 1005/1006/1015 only ever describe a close.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
POLICY_VIOLATION = 1008
_CLOSING: set[asyncio.Future[bool]] = set()

# (scheme, host, X-Forwarded-For) to tell the upstream: what the request looked like to the browser.
View = Callable[[web.Request], tuple[str, str, str]]


def _direct_view(request: web.Request) -> tuple[str, str, str]:
    return request.scheme, request.host, request.remote or ""


@dataclass(frozen=True, slots=True)
class WebSocketTimeouts:
    handshake_s: float = 10.0
    idle_s: float = 0.0  # 0: no idle limit
    session_check_s: float = 15.0


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
class Bearer:
    """The `Authorization: Bearer` the proxy hands on, and the one place --oidc-use-access-token counts.

    As a sidecar it goes upstream (`upstream`); behind NGINX auth_request it is in /oauth2/auth's 202
    (`auth_answer`). The token is the same in both: the access token with `access_token` (the ID token
    when the provider gave none, or for a bearer JWT the client sent), else the ID token.
    """

    upstream: bool = False
    auth_answer: bool = False
    access_token: bool = False

    @classmethod
    def choose(cls, settings: Settings) -> Bearer:
        # --oidc-use-access-token asks for the access token in Authorization, so it sends the header in
        # both topologies: the same options give Headlamp the same token behind a sidecar or NGINX.
        use_access_token = settings.oidc_use_access_token
        return cls(
            upstream=settings.pass_authorization_header or use_access_token,
            auth_answer=settings.set_authorization_header or use_access_token,
            access_token=use_access_token,
        )

    def token(self, tokens: Tokens) -> str:
        if self.access_token and tokens.access_token:
            return tokens.access_token
        return tokens.id_token


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    cookie_name: str = "_oidcproxy"
    pass_user_headers: bool = True
    pass_access_token: bool = False
    bearer: Bearer = Bearer()
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
        bearer = self.bearer.token(tokens)
        if self.bearer.upstream and bearer:
            out.append(("Authorization", f"Bearer {bearer}"))
        return [(k, _UNSAFE_VALUE.sub("", v)) for k, v in out if v]


def owned_header(name: str, *, authorization: bool = False) -> bool:
    """Whether the proxy owns this header in any spelling: case-folded and `_` read as `-`, as CGI,
    WSGI, PHP, Rack and many Go and Node helpers read them. `Authorization` when the proxy sets one."""
    key = name.lower().replace("_", "-")
    return (
        key in OWNED_HEADERS
        or key.startswith(_AUTH_REQUEST_PREFIX)
        or (authorization and key == "authorization")
    )


def auth_request_headers(
    identity: Identity,
    tokens: Tokens,
    *,
    xauthrequest: bool,
    access_token: bool,
    bearer: Bearer,
) -> list[tuple[str, str]]:
    """Headers on a 202 from /oauth2/auth for NGINX to copy with `auth_request_set`."""
    out: list[tuple[str, str]] = []
    if xauthrequest:
        out += [
            ("X-Auth-Request-User", identity.user),
            ("X-Auth-Request-Email", identity.email),
            ("X-Auth-Request-Preferred-Username", identity.preferred_username),
            ("X-Auth-Request-Groups", ",".join(identity.groups)),
        ]
        if access_token:
            out.append(("X-Auth-Request-Access-Token", tokens.access_token))
    token = bearer.token(tokens)
    if bearer.auth_answer and token:
        out.append(("Authorization", f"Bearer {token}"))
    return [(k, _UNSAFE_VALUE.sub("", v)) for k, v in out if v]


@functools.lru_cache(maxsize=256)  # a 30 KB session's Cookie header comes back on every request
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
    auth = policy.bearer.upstream
    drop = _DROP_WITH_AUTHORIZATION if auth else _DROP  # precomputed: no set built per request
    connection: list[str] = getattr(incoming, "getall", lambda *_: [])("Connection", ())
    if connection or not policy.pass_host_header:
        extra = {t.strip().lower() for value in connection for t in value.split(",")}
        if not policy.pass_host_header:
            extra.add("host")
        drop = drop | extra
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in incoming.items():
        lower = key.lower()
        if lower in drop:
            continue
        if ("_" in lower or lower.startswith(_AUTH_REQUEST_PREFIX)) and owned_header(
            lower, authorization=auth
        ):
            continue  # other spellings of our headers: rare, so tested off the common path
        if lower == "cookie":
            value = strip_cookies(value, policy.cookie_name)
            if not value:
                continue
        out.add(key, value)
    # `peer` is the whole X-Forwarded-For chain when the client is a trusted proxy, else its address.
    out.update({"X-Forwarded-For": peer, "X-Forwarded-Proto": scheme, "X-Forwarded-Host": host})
    if identity is not None and tokens is not None:
        out.extend(_IDENTITY_HEADERS.get(policy, identity, tokens))
    return out


class _IdentityHeaderCache:
    """identity_headers per session, built once: a 4,000-group session makes a 40 KB groups header.

    Keyed by the objects' ids, valid only while the very same objects (kept here) come back, as they do
    from the session cache. Bounded in entries and in the characters of the headers it keeps.
    """

    __slots__ = ("_chars", "_entries", "_max_chars", "_max_entries")

    def __init__(self, max_entries: int = 4096, max_chars: int = 8 * 1024 * 1024) -> None:
        self._entries: OrderedDict[
            tuple[int, int, int], tuple[HeaderPolicy, Identity, Tokens, list[tuple[str, str]], bytes]
        ] = OrderedDict()
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._chars = 0

    def get(self, policy: HeaderPolicy, identity: Identity, tokens: Tokens) -> list[tuple[str, str]]:
        return self._entry(policy, identity, tokens)[3]

    def block(self, policy: HeaderPolicy, identity: Identity, tokens: Tokens) -> bytes:
        """The same headers as HTTP/1.1 header lines, ready to append to a request head."""
        return self._entry(policy, identity, tokens)[4]

    def _entry(
        self, policy: HeaderPolicy, identity: Identity, tokens: Tokens
    ) -> tuple[HeaderPolicy, Identity, Tokens, list[tuple[str, str]], bytes]:
        key = (id(policy), id(identity), id(tokens))
        hit = self._entries.get(key)
        if hit is not None and hit[0] is policy and hit[1] is identity and hit[2] is tokens:
            self._entries.move_to_end(key)
            return hit
        headers = policy.identity_headers(identity, tokens)  # control characters already removed
        block = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8", "surrogateescape")
        entry = (policy, identity, tokens, headers, block)
        if len(block) <= self._max_chars:
            if hit is not None:
                self._drop(key)
            self._entries[key] = entry
            self._chars += len(block)
            while len(self._entries) > self._max_entries or self._chars > self._max_chars:
                self._drop(next(iter(self._entries)))
        return entry

    def _drop(self, key: tuple[int, int, int]) -> None:
        self._chars -= len(self._entries.pop(key)[4])


_IDENTITY_HEADERS = _IdentityHeaderCache()


def upstream_url(base: URL, target: str) -> URL:
    """The origin-form `target` on the route's origin. Never `base.join`: `//other.host/x` would name a
    host (RFC 3986 4.2), and an absolute-form target another scheme and host."""
    if not target.startswith("/"):
        raise BadRequest(f"request target is not a path: {target[:100]!r}")
    return URL(f"{base.scheme}://{base.raw_authority}{target}", encoded=True)


def is_websocket_upgrade(headers: Mapping[str, str]) -> bool:
    return headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in headers.get(
        "Connection", ""
    ).lower().replace(" ", "").split(",")


def _response_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    drop = set(HOP_BY_HOP)
    for value in headers.getall("Connection", ()):
        drop.update(t.strip().lower() for t in value.split(","))
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


class _ProxiedResponse(web.StreamResponse):
    """Holds the status line and headers back until the first body chunk, so a small answer leaves in
    one write instead of two (web.Response does the same; measured in bench/). Still streams."""

    _send_headers_immediately = False


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
    ) -> None:
        self.router = router
        self.policy = policy
        self._response_timeout_s = response_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_field_size = max_field_size
        self._view = view
        self._ws = websocket
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None
        self._client = UpstreamClient(connect_timeout_s=connect_timeout_s, max_field_size=max_field_size)
        # Responses cut after their status line was sent, by who failed: "upstream" or "client".
        self.cut: collections.Counter[str] = collections.Counter()

    async def start(self) -> None:
        # No cap per host: every open WebSocket holds one upstream connection for its lifetime, so a cap
        # of 512 stalled the 513th WebSocket of a worker (bench/: 10,000 idle WebSockets). Keep-alive
        # connections are bounded by the client's own concurrency, as with nginx's upstream keepalive.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
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
        await self._client.close()
        if self._http is not None:
            await self._http.close()

    async def handle(
        self,
        request: web.Request,
        identity: Identity | None,
        tokens: Tokens | None,
        *,
        expires_at: float | None = None,
    ) -> web.StreamResponse:
        """Proxy `request`; a WebSocket is closed with 1008 once `expires_at` (the session's end) passes."""
        route = self.router.match(request.path)
        if route is None:
            raise NotFound(f"no --upstream serves {request.path}")
        scheme, host, forwarded_for = self._view(request)
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
        )
        url = upstream_url(route.base, request.raw_path)
        if websocket:
            return await self._websocket(request, url, headers, expires_at)
        block = b""
        if identity is not None and tokens is not None:
            block = _IDENTITY_HEADERS.block(self.policy, identity, tokens)
        return await self._http_request(request, url, headers, block)

    async def _http_request(
        self, request: web.Request, url: URL, headers: CIMultiDict[str], identity: bytes = b""
    ) -> web.StreamResponse:
        # Our own HTTP/1.1 client (upstream_client): aiohttp's ClientSession machinery was ~30 % of a
        # proxied GET under py-spy. Body framing follows the client's: Content-Length if it sent one.
        body = request.content.iter_chunked(65536) if request.body_exists else None
        try:
            async with asyncio.timeout(self._response_timeout_s):
                upstream = await self._client.request(
                    request.method, url, headers.items(), body, serialized=identity
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{url.origin()} gave no answer in {self._response_timeout_s:g}s") from exc
        relayed = 0
        try:
            response = _ProxiedResponse(status=upstream.status, reason=upstream.reason or None)
            response.headers.extend(_response_headers(upstream.headers()))
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
        except (UpstreamBroken, UpstreamUnavailable) as exc:
            raise self._cut(
                "upstream", f"upstream {url.origin()} failed after {relayed} bytes: {exc}"
            ) from exc
        except ConnectionError as exc:
            raise self._cut("client", f"client left after {relayed} bytes from {url.origin()}") from exc
        finally:
            upstream.release()

    def _cut(self, side: str, detail: str) -> ResponseCut:
        self.cut[side] += 1
        return ResponseCut(detail)

    async def _websocket(
        self, request: web.Request, url: URL, headers: CIMultiDict[str], expires_at: float | None
    ) -> web.StreamResponse:
        upstream = await self._ws_connect(request, url, headers)
        # autoping off both ways: pings and pongs are the endpoints' to answer, so they pass through.
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0, autoping=False
        )
        activity = _Activity(asyncio.get_running_loop().time())
        try:
            await client.prepare(request)
            async with asyncio.TaskGroup() as group:
                pumps = [
                    group.create_task(_pump(client, upstream, activity), name="ws-client-to-upstream"),
                    group.create_task(_pump(upstream, client, activity), name="ws-upstream-to-client"),
                ]
                watch = _Watchdog(self._ws, self._clock, group, client, upstream, activity, expires_at)
                try:
                    await asyncio.wait(pumps)
                finally:
                    watch.cancel()  # if it is closing both sides, that task is the group's: it finishes
        finally:
            await upstream.close()
            await client.close()
        return client

    async def _ws_connect(
        self, request: web.Request, url: URL, headers: CIMultiDict[str]
    ) -> aiohttp.ClientWebSocketResponse:
        assert self._http is not None  # noqa: S101 - started by the app's cleanup context
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        for name in _WS_HANDSHAKE:
            headers.popall(name, None)
        ws_url = url.with_scheme("wss" if url.scheme == "https" else "ws")
        try:
            async with asyncio.timeout(self._ws.handshake_s):
                return await self._http.ws_connect(
                    ws_url, headers=headers, protocols=offered, max_msg_size=0, autoping=False
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"{url.origin()} websocket handshake took over {self._ws.handshake_s:g}s"
            ) from exc
        except aiohttp.WSServerHandshakeError as exc:
            raise UpstreamUnavailable(f"{url.origin()} refused the websocket: {exc.status}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"{url.origin()}: {type(exc).__name__}: {exc}") from exc


class _Watchdog:
    """Closes both sides when the session behind the socket ends (1008) or it sat idle (1001).

    A timer callback rather than a task per socket: 10,000 idle WebSockets held 10,000 sleeping tasks.
    Only when it fires for good does it start a task (in the socket's TaskGroup) to close both sides.
    """

    __slots__ = (
        "_activity",
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
    ) -> None:
        self._ws, self._clock, self._group = ws, clock, group
        self._client, self._upstream, self._activity = client, upstream, activity
        self._expires_at = expires_at
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
        elif idle > 0 and self._loop.time() - self._activity.last >= idle:
            log.info("closing a websocket idle for %gs", idle)
            self._end(1001, b"idle timeout")
        else:
            self._arm()

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
    closing = asyncio.ensure_future(sink.close(code=code, message=reason))
    _CLOSING.add(closing)  # referenced until done, so a cancelled pump does not drop it
    closing.add_done_callback(_CLOSING.discard)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await asyncio.shield(closing)
