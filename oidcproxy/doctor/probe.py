"""The doctor's I/O: ask the provider (discovery, JWKS, one real authorization request), judge the
answers with checks.py, and render the findings as text or JSON.

Every call is a single bounded GET with --provider-timeout and the proxy's TLS settings; nothing is
retried, so a slow or down provider shows up as such.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from oidcproxy.config import Settings
from oidcproxy.doctor.checks import (
    Finding,
    clock_skew,
    cookie_security,
    header_sizes,
    issuer_matches,
    keys_usable,
    redirect_verdict,
    synthetic_session,
    trusted_proxies,
)
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
            lines.append(
                f"  {f.status.upper() if f.status == 'problem' else f.status:8} {f.check:14} {f.summary}"
            )
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
        alg = await _provider(settings, clock, findings)
    findings.append(cookie_security(settings))
    findings += trusted_proxies(settings)
    findings += header_sizes(
        settings, synthetic_session(settings, sample_groups, alg, clock()), sample_groups
    )
    findings.append(Finding("session_store", "ok", "cookie store: nothing to check"))
    return Report(tuple(findings))


async def _provider(settings: Settings, clock: Clock, out: list[Finding]) -> str:
    """Discovery, issuer, keys, clock and redirect URI; answers the ID token algorithm to size with."""
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    connector = aiohttp.TCPConnector(ssl=ssl_context(settings.provider_ca_file))
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        doc, date = await _discovery(http, settings, out)
        if doc is None:
            out.append(Finding("jwks", "skipped", "not checked: no discovery document"))
            out.append(Finding("redirect_uri", "skipped", "not checked: no discovery document"))
            return "RS256"
        algs = [str(a) for a in doc.get("id_token_signing_alg_values_supported") or ["RS256"]]
        jwks = await _get(http, str(doc.get("jwks_uri", "")), "application/json")
        out.append(_keys(jwks, algs, str(doc.get("jwks_uri", ""))))
        out.append(clock_skew(date or jwks.headers.get("Date", ""), clock()))
        out.append(await _redirect(http, settings, str(doc.get("authorization_endpoint", ""))))
        return algs[0]


async def _discovery(
    http: aiohttp.ClientSession, settings: Settings, out: list[Finding]
) -> tuple[dict[str, Any] | None, str]:
    """The discovery document (or the manual endpoints) and the answer's Date header."""
    if settings.skip_oidc_discovery:
        out.append(Finding("discovery", "skipped", "--skip-oidc-discovery: the manual endpoints are used"))
        return {"jwks_uri": settings.oidc_jwks_url, "authorization_endpoint": settings.login_url}, ""
    url = settings.oidc_issuer_url.rstrip("/") + "/.well-known/openid-configuration"
    answer = await _get(http, url, "application/json")
    doc = _json_object(answer)
    if doc is None:
        why = answer.error or f"answered {answer.status}, not a JSON document"
        out.append(
            Finding(
                "discovery",
                "problem",
                f"{url}: {why}",
                "check --oidc-issuer-url, that the provider is up, and that this host can reach it "
                "(DNS, egress network policy, --provider-ca-file for a private CA)",
            )
        )
        return None, ""
    out.append(Finding("discovery", "ok", f"{url} answered"))
    out.append(issuer_matches(settings.oidc_issuer_url, doc))
    return doc, answer.headers.get("Date", "")


def _keys(answer: _Answer, algs: list[str], uri: str) -> Finding:
    doc = _json_object(answer)
    if doc is None:
        why = answer.error or f"answered {answer.status}, not a JSON key set"
        return Finding(
            "jwks", "problem", f"{uri}: {why}", "check the provider's jwks_uri is reachable from here"
        )
    return keys_usable(doc, algs, uri)


async def _redirect(http: aiohttp.ClientSession, settings: Settings, endpoint: str) -> Finding:
    """One real authorization request, as /oauth2/start would send it, with a throwaway state."""
    redirect_uri = settings.redirect_url or base_url(settings) + "/oauth2/callback"
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code", "client_id": settings.client_id, "redirect_uri": redirect_uri,
        "scope": settings.scope, "state": "oidcproxy-doctor-" + secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
    }  # fmt: skip
    if settings.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        params["code_challenge"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        params["code_challenge_method"] = "S256"
    params.update({k: v for k, v in parse_pairs(settings.auth_extra_param) if k not in params})
    sep = "&" if "?" in endpoint else "?"
    answer = await _get(http, f"{endpoint}{sep}{urlencode(params)}", "text/html")
    if answer.error:
        return Finding(
            "redirect_uri", "problem", f"{endpoint}: {answer.error}", "check the provider is reachable"
        )
    verdict = redirect_verdict(redirect_uri, answer.status, answer.headers.get("Location", ""), answer.body)
    if not settings.redirect_url and verdict.status == "ok":
        summary = verdict.summary + " (assumed: --redirect-url is empty)"
        return Finding(verdict.check, "note", summary, "set --redirect-url to the registered callback")
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
