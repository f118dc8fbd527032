"""The doctor's judgements: pure functions from settings and what the provider answered to Findings.

No I/O here (probe.py fetches); each problem names its fix, in the option's own spelling: a flag for
the flat options, `providers[i].option` for a `[[providers]]` entry (`Options`). Sizes are measured
with the real session codec and cookie chunking, on a synthetic session shaped by the configured
claims (the first provider's).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal
from urllib.parse import parse_qs, unquote_plus, urlsplit

import jwt

from oidcproxy.config import ProviderSpec, Settings, split_address
from oidcproxy.forwarded import Edge
from oidcproxy.model import Identity, Session, Tokens
from oidcproxy.proxy import Bearer, auth_request_headers
from oidcproxy.sessions.codec import SessionCodec
from oidcproxy.sessions.cookies import CookiePolicy, SetCookie, split_cookie
from oidcproxy.sessions.keys import KeyRing

__all__ = [
    "FLAGS",
    "Finding",
    "Options",
    "Status",
    "clock_skew",
    "cookie_security",
    "header_sizes",
    "issuer_matches",
    "keys_usable",
    "redirect_verdict",
    "synthetic_session",
    "trusted_proxies",
]

Status = Literal["ok", "problem", "note", "skipped"]

SKEW_LIMIT_S = 30.0  # half the 60 s leeway token checks allow (oidc/tokens.py)
NGINX_HEADER_LINE = 8 * 1024  # large_client_header_buffers 4 8k: one request header line
NGINX_PROXY_BUFFER = 4 * 1024  # proxy_buffer_size: one memory page, 4k (8k on some platforms)
_SIGNATURE_BYTES = {"RS": 256, "PS": 256, "ES256": 64, "ES384": 96, "ES512": 132, "EdDSA": 64}
# Error codes and texts providers use for an unregistered redirect URI (oidc-provider, Google, Entra
# ID, Auth0), anywhere in the answer; on a 4xx page, any mention of the redirect URI in its text.
_REFUSED = re.compile(
    r"invalid_redirect_uri|redirect_uri_mismatch|AADSTS50011|callback url mismatch", re.IGNORECASE
)
_MENTIONS = re.compile(r"redirect[ _-]?ur[il]", re.IGNORECASE)
_MARKUP = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_INTERACTIVE = frozenset({"login_required", "interaction_required", "consent_required"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's outcome; `fix` says what to change when the status is a problem. `provider` is the
    `[[providers]]` entry's id the check concerns ("" for the flat options and the proxy's own checks)."""

    check: str
    status: Status
    summary: str
    fix: str = ""
    provider: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "status": self.status,
            "summary": self.summary,
            "fix": self.fix,
            "provider": self.provider,
        }


@dataclass(frozen=True, slots=True)
class Options:
    """How a provider's options are spelt in a fix: `--client-id` for the flat options, or
    `providers[1].client_id` for entry 1 of `[[providers]]` (as configuration problems name them)."""

    entry: int | None = None

    def __call__(self, name: str) -> str:
        if self.entry is None:
            return "--" + name.replace("_", "-")
        return f"providers[{self.entry}].{name}"


FLAGS: Final = Options()


# -- the provider -------------------------------------------------------------------------------


def issuer_matches(configured: str, document: Mapping[str, Any], option: Options = FLAGS) -> Finding:
    said = document.get("issuer")
    if said == configured:
        return Finding("issuer", "ok", f"the provider's issuer is exactly {configured!r}")
    name = option("oidc_issuer_url")
    return Finding(
        "issuer",
        "problem",
        f"issuer mismatch: the provider calls itself {said!r}, {name} is {configured!r}; "
        "every sign-in would fail",
        f"set {name}={said} (character for character, OpenID Connect Discovery 4.3)",
    )


def _family(alg: str) -> str:
    if alg.startswith(("RS", "PS")):
        return "RSA"
    if alg.startswith("ES"):
        return "EC"
    return "OKP" if alg == "EdDSA" else alg


def keys_usable(document: Mapping[str, Any], advertised: Sequence[str], uri: str) -> Finding:
    """A signing key the ID tokens can be checked with: parses, and fits an advertised algorithm."""
    keys = document.get("keys")
    if not isinstance(keys, list) or not keys:
        return Finding("jwks", "problem", f"{uri} holds no keys", "check the provider's jwks_uri")
    usable: list[str] = []
    for data in keys:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        try:
            jwt.PyJWK(data)
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue
        alg = data.get("alg")
        if (alg in advertised) if alg else any(_family(a) == data.get("kty") for a in advertised):
            usable.append(str(data.get("kid", "?")))
    if usable:
        return Finding(
            "jwks", "ok", f"{len(usable)} usable signing key(s) at {uri} (kid {', '.join(usable)})"
        )
    return Finding(
        "jwks",
        "problem",
        f"no key at {uri} parses and fits an advertised algorithm ({', '.join(advertised)})",
        "fix the provider's key set, or its id_token_signing_alg_values_supported",
    )


def clock_skew(date_header: str, now: float) -> Finding:
    """Our clock against the provider's `Date` header (RFC 9110 6.6.1, one-second resolution)."""
    try:
        theirs = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return Finding("clock", "skipped", "the provider sent no usable Date header")
    skew = now - theirs
    text = f"this machine's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the provider's"
    if abs(skew) <= SKEW_LIMIT_S:
        return Finding("clock", "ok", text)
    return Finding(
        "clock",
        "problem",
        text + "; tokens will be refused as expired or not yet valid (60 s leeway)",
        "synchronise the clock (chrony or systemd-timesyncd with NTP) on this host or the provider",
    )


def redirect_verdict(
    redirect_uri: str, status: int, location: str, body: str, option: Options = FLAGS
) -> Finding:
    """Whether the provider took `redirect_uri`, from its answer to a real authorization request.

    Providers never redirect to a redirect URI they refuse (RFC 6749 4.1.2.1): any redirect to it, or
    onwards to the provider's login page, means accepted. A refusal is an error page (or an error
    redirect to the provider's own error page) that names the redirect URI.
    """
    text = _MARKUP.sub(" ", body)
    refused = bool(_REFUSED.search(unquote_plus(location)) or _REFUSED.search(body))
    refused = refused or (400 <= status < 500 and bool(_MENTIONS.search(text)))
    if 300 <= status < 400 and location and not refused:
        if location.split("?", 1)[0] == redirect_uri.split("?", 1)[0]:
            return _redirected_back(redirect_uri, location, option)
        return Finding("redirect_uri", "ok", f"{redirect_uri} accepted (the provider's login is next)")
    if status == 200 and not refused:
        return Finding("redirect_uri", "ok", f"{redirect_uri} accepted (the provider shows its login page)")
    error = _error_text(body, text) if body else unquote_plus(location)
    if refused:
        return Finding(
            "redirect_uri",
            "problem",
            f"the provider refuses the redirect URI {redirect_uri} ({error})",
            f"register {redirect_uri} exactly as the client's redirect URI at the provider, "
            f"or set {option('redirect_url')} to the one registered",
        )
    return Finding(
        "redirect_uri",
        "problem",
        f"the provider refused the authorization request with {status} ({error})",
        f"check {option('client_id')}, {option('scope')} and {option('auth_extra_param')} against the "
        "client registered at the provider",
    )


def _redirected_back(redirect_uri: str, location: str, option: Options) -> Finding:
    query = parse_qs(urlsplit(location).query)
    error = query.get("error", [""])[0]
    if not error or error in _INTERACTIVE:
        return Finding("redirect_uri", "ok", f"{redirect_uri} accepted (the provider redirected back to it)")
    detail = query.get("error_description", [""])[0]
    return Finding(
        "redirect_uri",
        "problem",
        f"{redirect_uri} is accepted, but the provider refused the request: {error} {detail}".strip(),
        f"check {option('scope')}, {option('auth_extra_param')} and the grant types allowed to the client "
        "at the provider",
    )


def _error_text(body: str, text: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        return ": ".join(str(data[k]) for k in ("error", "error_description") if data.get(k))
    found = _REFUSED.search(text) or _MENTIONS.search(text)
    start = max(0, found.start() - 60) if found else 0
    return " ".join(text[start : start + 160].split()) or "no detail"


# -- cookies and the edge -----------------------------------------------------------------------


def _redirect_url(settings: Settings) -> str:
    """--redirect-url, or with `[[providers]]` the first entry's redirect_url that is set."""
    return settings.redirect_url or next((p.redirect_url for p in settings.providers() if p.redirect_url), "")


def _external(settings: Settings) -> tuple[str, str] | None:
    url = _redirect_url(settings)
    if not url:
        return None
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _loopback(netloc: str) -> bool:
    name = urlsplit(f"//{netloc}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookie_security(settings: Settings) -> Finding:
    """Secure cookies against the scheme browsers use (the redirect URL's)."""
    seen = _external(settings)
    if seen is None:
        return Finding(
            "cookies",
            "note",
            "--redirect-url is empty, so the external scheme is taken from each request",
            "set --redirect-url to the registered callback to make it explicit",
        )
    scheme, host = seen
    if scheme == "https" and not settings.cookie_secure:
        return Finding(
            "cookies",
            "problem",
            "browsers use https but --cookie-secure=false: behind TLS termination the proxy sees http "
            "and sends the session cookie without Secure",
            "set --cookie-secure=true",
        )
    if scheme == "http" and not _loopback(host):
        return Finding(
            "cookies",
            "problem",
            f"browsers reach {host} over plain http: the session cookie travels in clear"
            + (" and, being Secure, is dropped by browsers" if settings.cookie_secure else ""),
            "serve it over https (TLS at the ingress) and use an https --redirect-url",
        )
    flag = "Secure" if settings.cookie_secure else "not Secure (local http only)"
    return Finding("cookies", "ok", f"{scheme}://{host}: session cookie {flag}")


def trusted_proxies(settings: Settings) -> list[Finding]:
    """--reverse-proxy/--trusted-proxy-ip against a sample request from an ingress (forwarded.py)."""
    out: list[Finding] = []
    for cidr in settings.trusted_proxy_ip:
        if settings.reverse_proxy and ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0:
            out.append(
                Finding(
                    "trusted_proxy",
                    "problem",
                    f"--trusted-proxy-ip={cidr} trusts every address: any client can forge "
                    "X-Forwarded-For/-Host/-Proto",
                    "narrow --trusted-proxy-ip to your ingress controller's pod or node CIDR",
                )
            )
    seen = _external(settings)
    if seen is None:
        return out or [Finding("trusted_proxy", "skipped", "no --redirect-url to build a sample request")]
    scheme, host = seen
    listen, _ = split_address(settings.http_address)
    peer = _sample_peer(settings, listen)
    edge = Edge.build(
        reverse_proxy=settings.reverse_proxy,
        trusted_proxy_ip=settings.trusted_proxy_ip,
        whitelist_domain=settings.whitelist_domain,
        own_urls=[_redirect_url(settings)],
    )
    headers = {"X-Forwarded-Proto": scheme, "X-Forwarded-Host": host, "X-Forwarded-For": "203.0.113.7"}
    sample = f"a request from {peer} forwarded for {scheme}://{host}"
    if not edge.trusts(peer):  # asking edge.external would only log that it ignores the headers
        if scheme == "https" or not _loopback(host):
            out.append(_untrusted(settings, sample, peer, f"http://{settings.http_address}"))
        return out or [Finding("trusted_proxy", "ok", "plain http on loopback: no proxy in between to trust")]
    result = edge.external(headers, peer=peer, scheme="http", host=settings.http_address)
    if (result.scheme, result.host) == (scheme, host):
        out.append(
            Finding("trusted_proxy", "ok", f"{sample} is seen as {result.base}, client {result.client}")
        )
    else:
        out.append(_untrusted(settings, sample, peer, result.base))
    return out or [Finding("trusted_proxy", "ok", "plain http on loopback: no proxy in between to trust")]


def _sample_peer(settings: Settings, listen: str) -> str:
    """Where the ingress connects from: loopback if we only listen there, else a non-loopback CIDR."""
    try:
        if ipaddress.ip_address(listen).is_loopback:
            return "127.0.0.1"
    except ValueError:
        pass
    for cidr in settings.trusted_proxy_ip:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
        if not network.is_loopback and network.num_addresses > 1:
            return str(next(network.hosts()))
    return "10.0.0.10"


def _untrusted(settings: Settings, sample: str, peer: str, seen: str) -> Finding:
    fix = "start with --reverse-proxy and --trusted-proxy-ip=<your ingress CIDR>"
    if settings.reverse_proxy:
        fix = f"add --trusted-proxy-ip=<your ingress CIDR> (only {', '.join(settings.trusted_proxy_ip)} now)"
    return Finding(
        "trusted_proxy",
        "problem",
        f"{sample} is seen as {seen}: its X-Forwarded-* headers are ignored (peer {peer} not trusted)",
        fix,
    )


# -- sizes --------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(claims: Mapping[str, Any], alg: str) -> str:
    signature = _SIGNATURE_BYTES.get(alg, _SIGNATURE_BYTES.get(alg[:2], 256))
    head = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": _b64(secrets.token_bytes(32))}).encode())
    return f"{head}.{_b64(json.dumps(claims).encode())}.{_b64(secrets.token_bytes(signature))}"


def _nest(path: str, value: Any) -> dict[str, Any]:
    """`realm_access.roles` -> {"realm_access": {"roles": value}}, as the claim mapping reads it."""
    out: dict[str, Any] = {}
    node = out
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def synthetic_session(settings: Settings, groups: int, alg: str, now: float) -> Session:
    """A session as large as one with `groups` groups: the first provider's claims in JWT ID and access
    tokens signed with `alg`, a refresh token, and the identity the proxy keeps."""
    spec: ProviderSpec = settings.providers()[0]
    names = tuple(f"{spec.oidc_groups_prefix}team-{i:04d}-{secrets.token_hex(4)}" for i in range(groups))
    domain = next((d.lstrip(".*") for d in spec.email_domain if d.lstrip(".*")), "example.com")
    email = f"firstname.lastname@{domain}"
    claims: dict[str, Any] = {
        "iss": spec.oidc_issuer_url, "aud": spec.client_id, "sub": secrets.token_hex(18),
        "exp": int(now) + 3600, "iat": int(now), "auth_time": int(now),
        "nonce": _b64(secrets.token_bytes(32)),
        "name": "Firstname Lastname", "preferred_username": "firstname.lastname", "email_verified": True,
        **_nest(spec.oidc_email_claim, email), **_nest(spec.oidc_groups_claim, list(names)),
    }  # fmt: skip
    access = {**claims, "scope": spec.scope, "jti": secrets.token_hex(16)}
    access.pop("nonce")
    tokens = Tokens(_jwt(claims, alg), _jwt(access, alg), _b64(secrets.token_bytes(256)), now + 3600)
    identity = Identity(claims["sub"], email, True, email, "firstname.lastname", names)
    return Session(identity, tokens, now, now + settings.cookie_expire)


def _set_cookie_line(cookie: SetCookie) -> int:
    attributes = "; Domain=" + cookie.domain if cookie.domain else ""
    attributes += f"; Path={cookie.path}; Max-Age={cookie.max_age}; Expires=Thu, 01 Jan 2026 00:00:00 GMT"
    attributes += "; HttpOnly; Secure; SameSite=Lax"
    return len(f"Set-Cookie: {cookie.name}={cookie.value}{attributes}\r\n")


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"


def _buffer(size: int) -> str:
    """The smallest NGINX buffer size (a power of two, in k) that holds `size` bytes with room."""
    return f"{max(8, 2 ** math.ceil(math.log2((size + 1024) / 1024)))}k"


def header_sizes(settings: Settings, session: Session, groups: int) -> list[Finding]:
    """The Cookie line browsers send back and the response headers NGINX must buffer from us."""
    keys = KeyRing(settings.cookie_secrets())
    sealed = SessionCodec(keys, settings.cookie_name).encode(session)
    policy = CookiePolicy(settings.cookie_name, settings.cookie_domain, settings.cookie_path)
    chunks = [SetCookie.make(policy, n, v, 1) for n, v in split_cookie(settings.cookie_name, sealed)]
    cookie_line = len("Cookie: " + "; ".join(f"{c.name}={c.value}" for c in chunks) + "\r\n")
    callback = 300 + sum(_set_cookie_line(c) for c in chunks)  # 302, Location, date, login cookie
    auth = 200 + sum(
        len(k) + len(v) + 4
        for k, v in auth_request_headers(
            session.identity,
            session.tokens,
            xauthrequest=settings.set_xauthrequest,
            access_token=settings.pass_access_token,
            bearer=Bearer.choose(settings),
        )
    )
    what = f"a session with {groups} groups: {len(sealed)} bytes sealed in {len(chunks)} cookie(s)"
    out = [Finding("sizes", "note", what, "pass --sample-groups N with your largest user's group count")]
    out += _request_findings(settings, cookie_line)
    out.append(_response_finding(max(callback, auth), "callback" if callback >= auth else "/oauth2/auth"))
    return out


def _request_findings(settings: Settings, line: int) -> list[Finding]:
    out: list[Finding] = []
    if line > settings.max_header_size:
        out.append(
            Finding(
                "sizes",
                "problem",
                f"the Cookie line is {_kib(line)}, over --max-header-size {settings.max_header_size}",
                f"raise --max-header-size to {2 ** math.ceil(math.log2(line + 1024))}",
            )
        )
    if line <= NGINX_HEADER_LINE:
        out.append(Finding("sizes", "ok", f"Cookie line {_kib(line)} fits NGINX's 8k header buffer"))
        return out
    size = _buffer(line)
    out.append(
        Finding(
            "sizes",
            "problem",
            f"the Cookie line is {_kib(line)}: NGINX's default large_client_header_buffers 4 8k answers "
            "400 Request Header Or Cookie Too Large",
            f'ingress-nginx ConfigMap key large-client-header-buffers: "4 {size}" '
            f"(plain NGINX: large_client_header_buffers 4 {size};)",
        )
    )
    return out


def _response_finding(size: int, which: str) -> Finding:
    if size <= NGINX_PROXY_BUFFER:
        return Finding("sizes", "ok", f"{which} response headers {_kib(size)} fit proxy_buffer_size 4k")
    buffer = _buffer(size)
    return Finding(
        "sizes",
        "problem",
        f"the {which} response headers are {_kib(size)}: over NGINX's default proxy_buffer_size (4k, one "
        "memory page), so NGINX answers 502 'upstream sent too big header'",
        f'annotation nginx.ingress.kubernetes.io/proxy-buffer-size: "{buffer}" on the Ingress '
        f"(ConfigMap key proxy-buffer-size; plain NGINX: proxy_buffer_size {buffer};)",
    )
