"""The doctor's I/O: ask each configured provider (discovery, JWKS, one real authorization request),
judge the answers with checks.py, and render the findings as text or JSON. With `[[providers]]`
every entry is checked in turn, with its own callback URL, and each of its findings names it.

Every call is a single bounded GET with --provider-timeout and the proxy's TLS settings; nothing is
retried, so a slow or down provider shows up as such.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from oidcproxy.config import ProviderSpec, Settings
from oidcproxy.doctor.checks import (
    FLAGS,
    Finding,
    Options,
    clock_skew,
    cookie_security,
    issuer_matches,
    keys_usable,
    redirect_verdict,
    trusted_proxies,
)
from oidcproxy.doctor.sizes import header_sizes, synthetic_session
from oidcproxy.model import Clock
from oidcproxy.oidc import parse_pairs, ssl_context
from oidcproxy.web import base_url

__all__ = ["Report", "diagnose"]

_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> int:
        return sum(f.status == "problem" for f in self.findings)

    def text(self) -> str:
        lines = [f"oidcproxy doctor: {len(self.findings)} checks, {self.problems} problem(s)"]
        for f in self.findings:
            status = f.status.upper() if f.status == "problem" else f.status
            lines.append(f"  {status:8} {f.check:14} {f'[{f.provider}] ' if f.provider else ''}{f.summary}")
            if f.fix and f.status == "problem":
                lines.append(f"  {'':8} {'':14} fix: {f.fix}")
        return "\n".join(lines)

    def json(self) -> str:
        body = {"ok": self.problems == 0, "problems": self.problems}
        return json.dumps({**body, "findings": [f.as_dict() for f in self.findings]}, indent=2)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    error: str = ""


async def diagnose(settings: Settings, clock: Clock, *, sample_groups: int = 10) -> Report:
    findings: list[Finding] = []
    if settings.oidc_type == "embedded":
        findings.append(
            Finding("provider", "skipped", "the embedded development provider runs inside the proxy")
        )
        alg: str = settings.dev_idp_signing_alg
    else:
        alg = await _providers(settings, clock, findings)
    findings.append(cookie_security(settings))
    findings += trusted_proxies(settings)
    findings += header_sizes(
        settings, synthetic_session(settings, sample_groups, alg, clock()), sample_groups
    )
    findings.append(Finding("session_store", "ok", "cookie store: nothing to check"))
    return Report(tuple(findings))


@dataclass(frozen=True, slots=True)
class _Target:
    """One provider to check: its options, how a fix names them, its callback URL."""

    spec: ProviderSpec
    option: Options
    redirect_uri: str
    assumed: bool  # no redirect_url configured: the callback URL is our guess from --http-address


def _targets(settings: Settings) -> list[_Target]:
    specs = settings.providers()
    if not settings.providers_listed:
        spec = specs[0]
        assumed = not settings.redirect_url
        return [
            _Target(spec, FLAGS, settings.redirect_url or base_url(settings) + "/oauth2/callback", assumed)
        ]
    several = len(specs) > 1  # each has its own callback then (README: Several providers)
    out = []
    for index, spec in enumerate(specs):
        path = f"/oauth2/callback/{spec.id}" if several else "/oauth2/callback"
        uri = spec.redirect_url or base_url(settings) + path
        out.append(_Target(spec, Options(index), uri, not spec.redirect_url))
    return out


async def _providers(settings: Settings, clock: Clock, out: list[Finding]) -> str:
    """Every provider's checks, in the order configured; answers the first's ID token algorithm."""
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    connector = aiohttp.TCPConnector(ssl=ssl_context(settings.provider_ca_file))
    algs: list[str] = []
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        for target in _targets(settings):
            found: list[Finding] = []
            algs.append(await _provider(http, settings, target, clock, found))
            named = target.spec.id if settings.providers_listed else ""
            out += [dataclasses.replace(f, provider=named) for f in found]
    return algs[0]


async def _provider(
    http: aiohttp.ClientSession, settings: Settings, target: _Target, clock: Clock, out: list[Finding]
) -> str:
    """Discovery, issuer, keys, clock and redirect URI; answers the ID token algorithm to size with."""
    doc, date = await _discovery(http, target, out)
    if doc is None:
        out.append(Finding("jwks", "skipped", "not checked: no discovery document"))
        out.append(Finding("redirect_uri", "skipped", "not checked: no discovery document"))
        return "RS256"
    algs = [str(a) for a in doc.get("id_token_signing_alg_values_supported") or ["RS256"]]
    jwks = await _get(http, str(doc.get("jwks_uri", "")), "application/json")
    out.append(_keys(jwks, algs, str(doc.get("jwks_uri", ""))))
    out.append(clock_skew(date or jwks.headers.get("Date", ""), clock()))
    out.append(await _redirect(http, settings, target, str(doc.get("authorization_endpoint", ""))))
    return algs[0]


async def _discovery(
    http: aiohttp.ClientSession, target: _Target, out: list[Finding]
) -> tuple[dict[str, Any] | None, str]:
    """The discovery document (or the manual endpoints) and the answer's Date header."""
    spec, option = target.spec, target.option
    if spec.skip_oidc_discovery:
        out.append(
            Finding("discovery", "skipped", f"{option('skip_oidc_discovery')}: the manual endpoints are used")
        )
        return {"jwks_uri": spec.oidc_jwks_url, "authorization_endpoint": spec.login_url}, ""
    url = spec.oidc_issuer_url.rstrip("/") + "/.well-known/openid-configuration"
    answer = await _get(http, url, "application/json")
    doc = _json_object(answer)
    if doc is None:
        why = answer.error or f"answered {answer.status}, not a JSON document"
        out.append(
            Finding(
                "discovery",
                "problem",
                f"{url}: {why}",
                f"check {option('oidc_issuer_url')}, that the provider is up, and that this host can "
                "reach it (DNS, egress network policy, --provider-ca-file for a private CA)",
            )
        )
        return None, ""
    out.append(Finding("discovery", "ok", f"{url} answered"))
    out.append(issuer_matches(spec.oidc_issuer_url, doc, option))
    return doc, answer.headers.get("Date", "")


def _keys(answer: _Answer, algs: list[str], uri: str) -> Finding:
    doc = _json_object(answer)
    if doc is None:
        why = answer.error or f"answered {answer.status}, not a JSON key set"
        return Finding(
            "jwks", "problem", f"{uri}: {why}", "check the provider's jwks_uri is reachable from here"
        )
    return keys_usable(doc, algs, uri)


async def _redirect(
    http: aiohttp.ClientSession, settings: Settings, target: _Target, endpoint: str
) -> Finding:
    """One real authorization request, as /oauth2/start would send it, with a throwaway state."""
    spec, redirect_uri = target.spec, target.redirect_uri
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code", "client_id": spec.client_id, "redirect_uri": redirect_uri,
        "scope": spec.scope, "state": "oidcproxy-doctor-" + secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
    }  # fmt: skip
    if settings.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        params["code_challenge"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        params["code_challenge_method"] = "S256"
    params.update({k: v for k, v in parse_pairs(spec.auth_extra_param) if k not in params})
    sep = "&" if "?" in endpoint else "?"
    answer = await _get(http, f"{endpoint}{sep}{urlencode(params)}", "text/html")
    if answer.error:
        return Finding(
            "redirect_uri", "problem", f"{endpoint}: {answer.error}", "check the provider is reachable"
        )
    location = answer.headers.get("Location", "")
    verdict = redirect_verdict(redirect_uri, answer.status, location, answer.body, target.option)
    if target.assumed and verdict.status == "ok":
        name = target.option("redirect_url")
        summary = verdict.summary + f" (assumed: {name} is empty)"
        return Finding(verdict.check, "note", summary, f"set {name} to the registered callback")
    return verdict


async def _get(http: aiohttp.ClientSession, url: str, accept: str) -> _Answer:
    if not url:
        return _Answer(0, error="no URL in the discovery document")
    try:
        async with http.get(url, headers={"Accept": accept}, allow_redirects=False) as resp:
            body = (await resp.content.read(_BODY_LIMIT)).decode(errors="replace")
            return _Answer(resp.status, dict(resp.headers), body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _Answer(0, error=f"unreachable ({type(exc).__name__}: {exc})")


def _json_object(answer: _Answer) -> dict[str, Any] | None:
    if answer.error or answer.status != 200:
        return None
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
