"""What a request really is when it passed through proxies. Pure: no I/O, no aiohttp.web.

- Trust: X-Forwarded-Proto/-Host/-Port/-For and RFC 7239 `Forwarded` count only with --reverse-proxy
  and only from a peer inside --trusted-proxy-ip (default loopback). From anyone else they are ignored
  and replaced, and the first time a peer sends them we say once which flag would trust it.
- Hosts: a forwarded host must be the proxy's own or match --whitelist-domain (`.example.com` for
  subdomains, optional `:port`); the same check guards `rd` targets and WebSocket `Origin`s.
- Targets: only origin-form (`/path?query`) is served; absolute-, asterisk- and authority-form are
  refused (RFC 9112 3.2), so a request line can never name another host.
- Routes: --skip-auth-route / --api-route regexes are matched on the normalised path (percent-decoded,
  `//` collapsed, `.`/`..` resolved), so `/public/%2e%2e/admin` cannot ride a public prefix.
- Forward auth: the request an ingress asks /oauth2/auth about comes as X-Forwarded-Method/-Uri
  (Caddy forward_auth, Traefik ForwardAuth), X-Original-Method/-URI (NGINX auth_request) or as the
  path after /oauth2/auth (Envoy ext_authz path_prefix); the headers count from trusted peers only.
Imports nothing from oidcproxy.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = [
    "Edge",
    "External",
    "Original",
    "HostRule",
    "RouteRule",
    "callback_url",
    "external_base",
    "normalise_path",
    "parse_forwarded",
    "target_form",
]

log = logging.getLogger("oidcproxy.forwarded")

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")
_MAX_WARNED_PEERS = 4096


def external_base(scheme: str, host: str) -> str:
    return f"{scheme}://{host}"


def callback_url(configured: str, scheme: str, host: str, provider: str = "") -> str:
    """--redirect-url when set (it always wins), else /oauth2/callback on the external origin; with
    several providers, each has its own: /oauth2/callback/<provider id> (README: Several providers)."""
    path = f"/oauth2/callback/{provider}" if provider else "/oauth2/callback"
    return configured or external_base(scheme, host) + path


def _split_host(host: str) -> tuple[str, int | None]:
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return name, int(port) if port.isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


@dataclass(frozen=True, slots=True)
class HostRule:
    """One --whitelist-domain: `example.com`, `.example.com` (and subdomains), optional `:port` or `:*`."""

    domain: str
    subdomains: bool
    port: int | None

    any_port: bool = False

    @classmethod
    def parse(cls, text: str) -> HostRule:
        text = text.strip()
        any_port = text.endswith(":*")
        name, port = _split_host(text.removesuffix(":*"))
        if name.startswith("*."):
            name = name[1:]
        return cls(name.lstrip("."), name.startswith("."), port, any_port)

    def matches(self, host: str, default_port: int | None = None) -> bool:
        """Without `:port` only the scheme's default port matches; `:*` allows any (as oauth2-proxy)."""
        name, port = _split_host(host)
        if not self.any_port and (port if port is not None else default_port) != (
            self.port if self.port is not None else default_port
        ):
            return False
        if name == self.domain:
            return True
        return self.subdomains and name.endswith("." + self.domain)


def target_form(target: str) -> str:
    """RFC 9112 3.2's form of a request target: origin, absolute, asterisk or authority."""
    if target.startswith("/"):
        return "origin"
    if target == "*":
        return "asterisk"
    return "absolute" if "://" in target else "authority"


def parse_forwarded(value: str) -> dict[str, str]:
    """The first (client-most) element of an RFC 7239 `Forwarded` header as lower-case keys."""
    first = value.split(",", 1)[0]
    out: dict[str, str] = {}
    for pair in first.split(";"):
        key, sep, val = pair.partition("=")
        if sep:
            out[key.strip().lower()] = val.strip().strip('"')
    return out


def normalise_path(path: str) -> str:
    """Percent-decoded until stable, `\\` as `/`, `//` collapsed, `.`/`..` resolved (never above root)."""
    text = path
    for _ in range(4):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    text = text.replace("\\", "/")
    parts: list[str] = []
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    trailing = "/" if text.endswith(("/", "/.", "/..")) and parts else ""
    return "/" + "/".join(parts) + trailing


@dataclass(frozen=True, slots=True)
class RouteRule:
    """`[METHOD=]regex` (--skip-auth-route, --api-route); the regex is searched in the normalised path."""

    method: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> RouteRule:
        method, sep, regex = text.partition("=")
        if sep and re.fullmatch(r"[A-Za-z]+", method):
            return cls(method.upper(), re.compile(regex))
        return cls("", re.compile(text))

    def matches(self, method: str, normalised: str) -> bool:
        return (not self.method or self.method == method.upper()) and bool(self.pattern.search(normalised))


@dataclass(frozen=True, slots=True)
class External:
    """The request as the person's browser made it: scheme, host (with port) and client address."""

    scheme: str
    host: str
    client: str
    trusted: bool

    @property
    def base(self) -> str:
        return external_base(self.scheme, self.host)


@dataclass(slots=True)
class Edge:
    """Decisions about the edge of the proxy: whom to trust for forwarded headers, which hosts are ours,
    which paths skip authentication or are API paths. Built once from the settings."""

    reverse_proxy: bool = False
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    whitelist: tuple[HostRule, ...] = ()
    own_hosts: frozenset[str] = frozenset()
    skip_auth: tuple[RouteRule, ...] = ()
    skip_preflight: bool = False
    api: tuple[RouteRule, ...] = ()
    _warned: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def build(
        cls,
        *,
        reverse_proxy: bool = False,
        trusted_proxy_ip: Sequence[str] = ("127.0.0.0/8", "::1/128"),
        whitelist_domain: Iterable[str] = (),
        own_urls: Iterable[str] = (),
        skip_auth_route: Iterable[str] = (),
        skip_auth_preflight: bool = False,
        api_route: Iterable[str] = (),
    ) -> Edge:
        own = frozenset(urlsplit(u).netloc.lower() for u in own_urls if u)
        return cls(
            reverse_proxy=reverse_proxy,
            trusted=tuple(ipaddress.ip_network(c.strip(), strict=False) for c in trusted_proxy_ip),
            whitelist=tuple(HostRule.parse(d) for d in whitelist_domain if d.strip()),
            own_hosts=own,
            skip_auth=tuple(RouteRule.parse(r) for r in skip_auth_route),
            skip_preflight=skip_auth_preflight,
            api=tuple(RouteRule.parse(r) for r in api_route),
        )

    # -- trust
    def trusts(self, peer: str) -> bool:
        if not self.reverse_proxy or not peer:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def external(self, headers: Mapping[str, str], *, peer: str, scheme: str, host: str) -> External:
        """Scheme, host and client as the browser saw them; forwarded values only from a trusted peer."""
        sent = _forwarded_values(headers)
        if not self.trusts(peer):
            if sent:
                self._warn_untrusted(peer, sorted(sent))
            return External(scheme, host, peer, False)
        fwd_scheme = sent.get("proto", "").lower()
        if fwd_scheme not in ("http", "https"):
            fwd_scheme = scheme
        fwd_host = sent.get("host", "") or host
        if not _HOST.match(fwd_host) or not (
            self.is_own_host(fwd_host, host, fwd_scheme) or self.host_whitelisted(fwd_host, fwd_scheme)
        ):
            if fwd_host != host:
                log.warning(
                    "forwarded host %r is not ours nor in --whitelist-domain; using %r", fwd_host, host
                )
            fwd_host = host
        port = sent.get("port", "")
        _, has_port = _split_host(fwd_host)
        if port.isdigit() and has_port is None and int(port) != _DEFAULT_PORTS[fwd_scheme]:
            fwd_host = f"{fwd_host}:{port}"
        client = self._client(headers.get("X-Forwarded-For", ""), sent.get("for", "")) or peer
        return External(fwd_scheme, fwd_host, client, True)

    def _client(self, xff: str, first: str) -> str:
        """The right-most X-Forwarded-For entry that is not one of our trusted proxies."""
        hops = [h.strip() for h in xff.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusts_by_cidr(hop):
                return hop
        return hops[0] if hops else first

    def _warn_untrusted(self, peer: str, names: list[str]) -> None:
        if peer in self._warned or len(self._warned) >= _MAX_WARNED_PEERS:
            return
        self._warned.add(peer)
        if not self.reverse_proxy:
            fix = "if a proxy you run sets them, start with --reverse-proxy"
            if not self.trusts_by_cidr(peer):
                fix += f" and --trusted-proxy-ip={_cidr_for(peer)}"
        else:
            fix = f"if it is your ingress, add --trusted-proxy-ip={_cidr_for(peer)}"
        log.warning(
            "ignoring forwarded headers (%s) from untrusted peer %s: the callback URL and cookies use "
            "what this server saw; %s",
            ", ".join(names),
            peer or "unknown",
            fix,
        )

    def trusts_by_cidr(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    # -- hosts
    def is_own_host(self, candidate: str, request_host: str, scheme: str = "https") -> bool:
        default = _DEFAULT_PORTS.get(scheme)
        want = _host_key(candidate, default)
        return any(want == _host_key(h, default) for h in (request_host, *self.own_hosts))

    def host_whitelisted(self, host: str, scheme: str = "https") -> bool:
        return any(rule.matches(host, _DEFAULT_PORTS.get(scheme)) for rule in self.whitelist)

    def safe_redirect(self, rd: str, external: External) -> bool:
        """A full-URL `rd` may go to our own host or a whitelisted domain, over http(s) only."""
        try:
            parts = urlsplit(rd)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
            return False
        if any(c in rd for c in "\\\r\n\t") or not _HOST.match(parts.netloc):
            return False
        return self.is_own_host(parts.netloc, external.host, parts.scheme) or self.host_whitelisted(
            parts.netloc, parts.scheme
        )

    def origin_allowed(self, origin: str, external: External) -> bool:
        """A browser's `Origin` on a cookie-authenticated WebSocket: ours or whitelisted (CSWSH)."""
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        return self.is_own_host(parts.netloc, external.host, parts.scheme) or self.host_whitelisted(
            parts.netloc, parts.scheme
        )

    # -- routes
    def skips_auth(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        if self.skip_preflight and method == "OPTIONS" and "Access-Control-Request-Method" in headers:
            return True
        if not self.skip_auth:
            return False
        norm = normalise_path(path)
        return any(rule.matches(method, norm) for rule in self.skip_auth)

    def is_api(self, method: str, path: str) -> bool:
        norm = normalise_path(path)
        return any(rule.matches(method, norm) for rule in self.api)

    def original(self, headers: Mapping[str, str], *, peer: str, method: str, tail: str) -> Original:
        """The request /oauth2/auth is asked about. `tail`: what followed /oauth2/auth in its target.

        From a trusted peer: X-Forwarded-Method/-Uri, else X-Original-Method/-URI. Otherwise the path
        after /oauth2/auth (Envoy's path_prefix), with this request's method; else unknown ("").
        """
        if self.trusts(peer):
            uri = headers.get("X-Forwarded-Uri") or headers.get("X-Original-URI") or ""
            if uri:
                sent = headers.get("X-Forwarded-Method") or headers.get("X-Original-Method") or "GET"
                return Original(sent.strip().upper()[:16], _origin_form(uri))
        if tail.startswith("/"):
            return Original(method.upper(), _origin_form(tail))
        return Original(method.upper(), "")


@dataclass(frozen=True, slots=True)
class Original:
    """The method and origin-form target (`/path?query`) of the request an ingress asks about;
    `target` is empty when no trusted header named it."""

    method: str
    target: str

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def _origin_form(uri: str) -> str:
    """`/path?query` only: a full URL keeps its path and query, anything else names no target."""
    uri = uri.strip()
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        uri = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not uri.startswith("/") or uri.startswith("//") or any(c in uri for c in "\r\n\t\\"):
        return ""
    return uri


def _host_key(host: str, default_port: int | None) -> tuple[str, int | None]:
    name, port = _split_host(host)
    return name, port if port is not None else default_port


def _cidr_for(peer: str) -> str:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return "<your ingress CIDR>"
    return f"{address}/{address.max_prefixlen}"


def _forwarded_values(headers: Mapping[str, str]) -> dict[str, str]:
    """proto/host/port/for from X-Forwarded-* or, when those are absent, from RFC 7239 `Forwarded`."""
    out: dict[str, str] = {}
    xf = {
        "proto": "X-Forwarded-Proto",
        "host": "X-Forwarded-Host",
        "port": "X-Forwarded-Port",
        "for": "X-Forwarded-For",
    }
    for key, name in xf.items():
        value = headers.get(name)
        if value:
            out[key] = value.split(",", 1)[0].strip()
    forwarded = headers.get("Forwarded")
    if forwarded:
        for key, value in parse_forwarded(forwarded).items():
            if key in ("proto", "host", "for"):
                out.setdefault(key, value.strip("[]") if key == "for" else value)
    return out
