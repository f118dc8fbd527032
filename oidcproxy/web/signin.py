"""Signing in: /oauth2/sign_in (the page, or the provider chooser), /oauth2/start and the callback
(/oauth2/callback[/<id>]) with its mix-up defence; logins started, completed and failed are told to
app[METRICS]. Imports the domain parts, appkeys, sessionio and middleware; never app or handlers.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import quote

from aiohttp import web

from oidcproxy.errors import (
    Forbidden,
    IdPUnavailable,
    LoginFailed,
    ProxyError,
    StateUnavailable,
    TokenInvalid,
    TokenRefused,
)
from oidcproxy.forwarded import callback_url
from oidcproxy.login import Callback
from oidcproxy.model import Session
from oidcproxy.oidc import Provider, authorization_iss_problem
from oidcproxy.web.appkeys import CLOCK, IDENTITY, LOGIN, METRICS, POLICIES, PROVIDERS, SETTINGS
from oidcproxy.web.audit import audit
from oidcproxy.web.middleware import page, pages, redirect
from oidcproxy.web.sessionio import (
    apply_cookies,
    browser_external,
    browser_scheme,
    clear_session,
    safe_rd,
    save_session,
)

__all__ = ["callback", "sign_in", "start"]

log = logging.getLogger("oidcproxy")


async def sign_in(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    rd = quote(safe_rd(request), safe="")
    providers = request.app[PROVIDERS]
    if settings.skip_provider_button and providers.single:
        return await start(request)
    if providers.single:
        html = (await pages(request)).sign_in("/oauth2/start?rd=" + rd)
    else:  # the chooser: one button a provider, in the order configured
        choices = [(f"/oauth2/start?provider={quote(p.id)}&rd={rd}", p.display_name) for p in providers]
        html = (await pages(request)).choose(choices)
    response = page(html)
    apply_cookies(response, await clear_session(request), scheme=browser_scheme(request))
    return response


async def start(request: web.Request) -> web.StreamResponse:
    """`/oauth2/start?provider=ID`; without one, the only provider, or the chooser when several."""
    app = request.app
    providers = app[PROVIDERS]
    if not providers.single and "provider" not in request.query:
        return redirect("/oauth2/sign_in?rd=" + quote(safe_rd(request), safe=""))
    provider = providers.get(request.query.get("provider", providers.first.id))
    return_to = safe_rd(request)
    ext = browser_external(request)
    configured = provider.client.config.redirect_url or app[SETTINGS].redirect_url
    path_id = "" if providers.single else provider.id
    redirect_uri = callback_url(configured, ext.scheme, ext.host, path_id)
    attempt, login_cookie = app[LOGIN].begin(return_to, redirect_uri, provider.id)
    url = await provider.client.authorize_url(
        attempt.redirect_uri, attempt.state, attempt.nonce, attempt.code_challenge
    )
    response = redirect(url)
    # No session fixation: starting a login drops whatever session the browser had.
    apply_cookies(response, [*await clear_session(request), login_cookie], scheme=ext.scheme)
    app[METRICS].logins_started[provider.id].inc()
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    try:
        return await _callback(request)
    except ProxyError as exc:
        audit("sign_in_failed", request, reason=exc.detail or exc.public, error=type(exc).__name__)
        raise


async def _callback(request: web.Request) -> web.StreamResponse:
    app = request.app
    metrics = app[METRICS]
    try:
        done = await app[LOGIN].finish(request.cookies, request.query)
    except LoginFailed:
        reason = "provider_error" if "error" in request.query else "state"
        metrics.login_failed[_path_provider(request)][reason].inc()
        raise
    except StateUnavailable:
        metrics.login_failed[_path_provider(request)]["state_unavailable"].inc()
        raise
    bound = done.attempt.provider
    try:
        response = await _signed_in(request, done)
    except Exception as exc:
        metrics.login_failed[bound][_login_failure(exc)].inc()
        raise
    metrics.logins_completed[bound].inc()
    return response


def _path_provider(request: web.Request) -> str:
    """Before the login state is open, the provider a callback's path names (for the metrics; an id
    that is not configured counts as none)."""
    providers = request.app[PROVIDERS]
    return request.match_info.get("provider", providers.first.id if providers.single else "")


def _login_failure(exc: Exception) -> str:
    """Why the code exchange or what follows it failed (web.metrics.LOGIN_FAILURES)."""
    for kind, reason in _FAILURES:
        if isinstance(exc, kind):
            return reason
    return "other"


_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (TokenRefused, "token_refused"),
    (TokenInvalid, "token_invalid"),
    (LoginFailed, "token_invalid"),  # e.g. no id_token in the answer
    (Forbidden, "forbidden"),
    (IdPUnavailable, "provider_unavailable"),
    (StateUnavailable, "state_unavailable"),
)


async def _signed_in(request: web.Request, done: Callback) -> web.StreamResponse:
    app = request.app
    attempt = done.attempt
    provider = await _callback_provider(request, attempt.provider)
    tokens, claims = await provider.client.exchange(
        done.code, redirect_uri=attempt.redirect_uri, verifier=attempt.verifier, nonce=attempt.nonce
    )
    identity = request[IDENTITY] = provider.claims.identity(claims)
    app[POLICIES][provider.id].require(identity)
    now = app[CLOCK]()
    session = Session(
        identity,
        tokens,
        created_at=now,
        expires_at=now + app[SETTINGS].cookie_expire,
        sid=_provider_sid(claims),
        signed_in_at=now,
        provider=provider.id,
    )
    audit("sign_in", request, provider=provider.id)
    response = redirect(done.attempt.return_to)
    scheme = browser_scheme(request)
    apply_cookies(response, await save_session(request, session), scheme=scheme)
    apply_cookies(response, [app[LOGIN].clear(done.attempt.state)], scheme=scheme)
    return response


def _provider_sid(claims: dict[str, Any]) -> str:
    """The provider's session id (Back-Channel Logout 1.0, 2.1), else one of ours: sign-out revokes it."""
    sid = claims.get("sid")
    return sid if isinstance(sid, str) and sid else "oidcproxy:" + secrets.token_urlsafe(16)


async def _callback_provider(request: web.Request, bound: str) -> Provider:
    """Mix-up defence (RFC 9700 4.4): the callback's path names the provider the login state is bound
    to (each provider has its own callback when there are several), and its `iss` (RFC 9207) is that
    provider's. LoginFailed (400) otherwise, before any code is sent anywhere."""
    providers = request.app[PROVIDERS]
    named = request.match_info.get("provider")
    if named is None and not providers.single:
        raise LoginFailed("callback at /oauth2/callback, but each provider has its own /oauth2/callback/<id>")
    if named is not None and named != bound:  # one [[providers]] entry may use /oauth2/callback/<id>
        log.warning("login refused: provider %r answered a login bound to %r (mix-up?)", named[:40], bound)
        raise LoginFailed(f"callback for provider {named[:40]!r}, login state bound to {bound!r}")
    provider = providers.get(bound)
    problem = authorization_iss_problem(await provider.client.metadata(), request.query.get("iss"))
    if problem:
        log.warning("login refused at provider %s: %s", provider.id, problem)
        raise LoginFailed(problem)
    return provider
