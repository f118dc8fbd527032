"""Pure header policy: what the upstream is sent and what /oauth2/auth answers NGINX with.

Nothing from the client is trusted: hop-by-hop headers and anything named in `Connection` are
dropped, client-sent copies of the headers we own (`owned_header`: identity, forwarding, every
X-Auth-Request-*, Authorization when we send one) are removed in any spelling (case, `_` for `-`)
before ours are added, and the proxy's own cookies never reach the upstream. No I/O and no aiohttp:
headers in, headers out. Imports only config (for `Bearer.choose`) and model.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDict, CIMultiDictProxy

from oidcproxy.config import Settings
from oidcproxy.model import Identity, Tokens

__all__ = [
    "HOP_BY_HOP",
    "OWNED_HEADERS",
    "Bearer",
    "HeaderCaches",
    "HeaderPolicy",
    "IdentityHeaderCache",
    "auth_request_headers",
    "is_websocket_upgrade",
    "owned_header",
    "response_headers",
    "strip_cookies",
    "upstream_headers",
]


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
# X-Request-Id is ours too: the middleware keeps a trusted proxy's id and makes one for anyone else.
_FORWARDING = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
        "x-request-id",
    }
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
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f]")


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
    caches: HeaderCaches | None = None,
    request_id: str = "",
) -> CIMultiDict[str]:
    """What the upstream is sent: the client's headers less anything it must not decide, and our
    forwarding headers (with the request's id, so the upstream's logs can be joined to ours).

    With `caches` (the app's, see HeaderCaches) the work a steady session repeats is done once.
    """
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
            value = (caches.strip_cookies if caches else strip_cookies)(value, policy.cookie_name)
            if not value:
                continue
        out.add(key, value)
    # `peer` is the whole X-Forwarded-For chain when the client is a trusted proxy, else its address.
    out.update({"X-Forwarded-For": peer, "X-Forwarded-Proto": scheme, "X-Forwarded-Host": host})
    if request_id:
        out["X-Request-Id"] = request_id
    if identity is not None and tokens is not None:
        if caches is None:
            out.extend(policy.identity_headers(identity, tokens))
        else:
            out.extend(caches.identity.get(policy, identity, tokens))
    return out


class IdentityHeaderCache:
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


def is_websocket_upgrade(headers: Mapping[str, str]) -> bool:
    return headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in headers.get(
        "Connection", ""
    ).lower().replace(" ", "").split(",")


def response_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    drop = set(HOP_BY_HOP)
    for value in headers.getall("Connection", ()):
        drop.update(t.strip().lower() for t in value.split(","))
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


class HeaderCaches:
    """The header work a steady session repeats, done once; owned by the app's UpstreamProxy.

    `identity`: the identity headers per session. `strip_cookies`: the Cookie header without ours, per
    header value (a 30 KB session's Cookie header comes back on every request).
    """

    __slots__ = ("identity", "strip_cookies")

    def __init__(self, cookie_headers: int = 256) -> None:
        self.identity = IdentityHeaderCache()
        self.strip_cookies = functools.lru_cache(maxsize=cookie_headers)(strip_cookies)
