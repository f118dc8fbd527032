"""The doctor's judgements: pure functions from settings and what the provider answered to Findings.

No I/O here (probe.py fetches); each problem names its fix, in the option's own spelling: a flag for
the flat options, `providers[i].option` for a `[[providers]]` entry (`Options`). The cookie and
header sizes are judged in sizes.py, which returns these Findings too.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal
from urllib.parse import parse_qs, unquote_plus, urlsplit

import jwt

from oidcproxy.config import Settings, split_address
from oidcproxy.forwarded import Edge

__all__ = [
    "FLAGS",
    "Finding",
    "Options",
    "Status",
    "clock_skew",
    "cookie_security",
    "issuer_matches",
    "keys_usable",
    "redirect_verdict",
    "trusted_proxies",
]

Status = Literal["ok", "problem", "note", "skipped"]

SKEW_LIMIT_S = 30.0  # half the 60 s leeway token checks allow (oidc/tokens.py)
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
