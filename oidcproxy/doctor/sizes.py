"""The doctor's size checks: a synthetic session as large as a real one (the first provider's claims
in JWT ID and access tokens, a refresh token), sealed with the real session codec and split by the
real cookie chunking, then the Cookie line and our response headers measured against NGINX's default
buffers. Pure, like checks.py (whose Finding it returns); probe.py calls it.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from collections.abc import Mapping
from typing import Any

from oidcproxy.config import ProviderSpec, Settings
from oidcproxy.doctor.checks import Finding
from oidcproxy.model import Identity, Session, Tokens
from oidcproxy.proxy import Bearer, auth_request_headers
from oidcproxy.sessions.codec import SessionCodec
from oidcproxy.sessions.cookies import CookiePolicy, SetCookie, split_cookie
from oidcproxy.sessions.keys import KeyRing

__all__ = ["NGINX_HEADER_LINE", "NGINX_PROXY_BUFFER", "header_sizes", "synthetic_session"]

NGINX_HEADER_LINE = 8 * 1024  # large_client_header_buffers 4 8k: one request header line
NGINX_PROXY_BUFFER = 4 * 1024  # proxy_buffer_size: one memory page, 4k (8k on some platforms)
_SIGNATURE_BYTES = {"RS": 256, "PS": 256, "ES256": 64, "ES384": 96, "ES512": 132, "EdDSA": 64}


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
