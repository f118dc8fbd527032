"""Handlers: /oauth2/auth, /oauth2/userinfo, ping/ready, and the gate in front of every other path.

Thin: read the request, call the domain, build the response. Status codes come from the error tree.
What was decided (auth outcomes, refreshes, session store calls) is told to app[METRICS]. Signing in
is in signin, signing out in signout; the session and cookie helpers all three use in sessionio.
Imports the domain parts, appkeys, sessionio and middleware; never app (assembly) or headerlimit.
"""

from __future__ import annotations

import functools
import logging
from urllib.parse import quote

from aiohttp import web

from oidcproxy.authz import Policy
from oidcproxy.coordination import Revocations
from oidcproxy.errors import (
    Forbidden,
    IdPUnavailable,
    LoginFailed,
    NotAuthenticated,
    RefreshRefused,
    RefreshSuperseded,
)
from oidcproxy.forwarded import Original, external_base
from oidcproxy.model import Identity, Session, Tokens
from oidcproxy.oidc import bearer_token, refresh_state
from oidcproxy.proxy import auth_request_headers, is_websocket_upgrade
from oidcproxy.web.appkeys import (
    BEARER,
    CLOCK,
    DRAINING,
    EDGE,
    IDENTITY,
    METRICS,
    POLICIES,
    PROVIDERS,
    PROXY,
    REFRESHER,
    REVOKED,
    SET_COOKIES,
    SETTINGS,
)
from oidcproxy.web.audit import audit
from oidcproxy.web.metrics import NO_PROVIDER
from oidcproxy.web.middleware import redirect, wants_html
from oidcproxy.web.sessionio import (
    apply_cookies,
    browser_external,
    browser_scheme,
    clear_session,
    open_session,
    require_session,
    save_session,
)

__all__ = ["auth", "gate", "ping", "ready", "stashed_cookies", "userinfo"]

log = logging.getLogger("oidcproxy")


async def userinfo(request: web.Request) -> web.StreamResponse:
    ident = (await require_session(request)).identity
    body = {
        "user": ident.user,
        "email": ident.email,
        "preferred_username": ident.preferred_username,
        "groups": list(ident.groups),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def auth(request: web.Request) -> web.StreamResponse:
    """Forward auth (NGINX auth_request, Caddy, Traefik, Envoy): 202 signed in and allowed (or a
    --skip-auth-route), 401 not signed in, 403 not allowed, 503 when the session store failed (NGINX
    answers 500: fail closed, never a sign-in). A browser's unauthenticated GET gets a redirect to sign
    in instead of the 401 with --forward-auth-redirect, unless it is an --api-route."""
    app = request.app
    seen = app[METRICS].auth
    original = _original(request)
    if original.target and app[EDGE].skips_auth(original.method, original.path, request.headers):
        seen[NO_PROVIDER].skipped.inc()
        return web.Response(status=202, headers={"Cache-Control": "no-store"})
    session = await open_session(request)
    try:
        if session is None:
            raise NotAuthenticated("no valid session cookie")
        session = await _fresh(request, session)
    except NotAuthenticated:
        seen[NO_PROVIDER].unauthenticated.inc()
        return _unauthenticated(request, original)
    ident = request[IDENTITY] = session.identity
    decision = _policy(request, session.provider).evaluate(ident)
    if not decision.allowed or not _query_allows(request, ident):
        reason = decision.reason if not decision.allowed else "allowed_groups/allowed_emails of the query"
        audit("denied", request, reason=reason)
        seen[session.provider].forbidden.inc()
        return web.Response(status=403, headers={"Cache-Control": "no-store"})
    seen[session.provider].cookie.inc()
    settings = app[SETTINGS]
    extra = auth_request_headers(
        ident,
        session.tokens,
        xauthrequest=settings.set_xauthrequest,
        access_token=settings.pass_access_token,
        bearer=app[PROXY].policy.bearer,
    )
    return web.Response(status=202, headers=[("Cache-Control", "no-store"), *extra])


def _original(request: web.Request) -> Original:
    tail = request.match_info.get("tail", "")
    if tail and request.query_string:
        tail += "?" + request.query_string
    peer = request.remote or ""
    return request.app[EDGE].original(
        request.headers, peer=peer, method=request.method, tail="/" + tail if tail else ""
    )


def _unauthenticated(request: web.Request, original: Original) -> web.StreamResponse:
    """401, or with --forward-auth-redirect a browser navigation's way to sign in, back to `original`."""
    edge = request.app[EDGE]
    navigation = original.method in ("GET", "HEAD") and wants_html(request) and bool(original.target)
    if not (request.app[SETTINGS].forward_auth_redirect and navigation):
        return web.Response(status=401, headers={"Cache-Control": "no-store"})
    if edge.is_api(original.method, original.path) or is_websocket_upgrade(request.headers):
        return web.Response(status=401, headers={"Cache-Control": "no-store"})
    ext = browser_external(request)
    back = external_base(ext.scheme, ext.host) + original.target
    return redirect("/oauth2/start?rd=" + quote(back, safe=""))


def _query_allows(request: web.Request, ident: Identity) -> bool:
    """`allowed_groups` / `allowed_emails` on /oauth2/auth: per-ingress rules on top of the policy."""
    groups = {g.strip() for v in request.query.getall("allowed_groups", ()) for g in v.split(",")} - {""}
    emails = {e.strip().lower() for v in request.query.getall("allowed_emails", ()) for e in v.split(",")}
    emails.discard("")
    if groups and not groups.intersection(ident.groups):
        return False
    return not emails or ident.email.lower() in emails


async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="OK")


async def ready(request: web.Request) -> web.StreamResponse:
    if request.app[DRAINING].is_set():  # SIGTERM: the ingress should stop sending new requests here
        return web.Response(status=503, text="shutting down", headers={"Connection": "close"})
    try:
        for provider in request.app[PROVIDERS]:
            await provider.client.metadata()
    except IdPUnavailable as exc:
        log.warning("not ready: %s", exc.detail)
        return web.Response(status=503, text="provider discovery not loaded")
    return web.Response(text="OK")


async def gate(request: web.Request) -> web.StreamResponse:
    """Every path that is not ours: a valid, allowed session (or bearer JWT), or no further."""
    app = request.app
    seen = app[METRICS].auth
    if app[EDGE].skips_auth(request.method, request.rel_url.raw_path, request.headers):
        seen[NO_PROVIDER].skipped.inc()
        return await app[PROXY].handle(request, None, None)
    expires_at: float | None = None
    provider = NO_PROVIDER
    try:
        session = await open_session(request)
        if session is not None:
            provider = session.provider
            _same_origin_websocket(request)
            session = await _fresh(request, session)
            identity, tokens, expires_at = session.identity, session.tokens, session.expires_at
        else:
            provider, identity, tokens = await _bearer(request)
        request[IDENTITY] = identity
        _policy(request, provider).require(identity)
    except NotAuthenticated:
        seen[NO_PROVIDER].unauthenticated.inc()
        raise
    except Forbidden as exc:
        seen[provider].forbidden.inc()
        if IDENTITY in request:
            audit("denied", request, reason=exc.detail)
        raise
    decided = seen[provider]
    (decided.cookie if session is not None else decided.bearer).inc()
    alive = None if session is None else functools.partial(_alive, app[REVOKED], session)
    return await app[PROXY].handle(request, identity, tokens, expires_at=expires_at, alive=alive)


def _alive(revoked: Revocations, session: Session) -> bool:
    """For an open WebSocket's watchdog: whether its session was revoked since."""
    return not revoked.revoked(session)


def _same_origin_websocket(request: web.Request) -> None:
    """Cross-site WebSocket hijacking: a cookie-authenticated upgrade must come from one of our pages."""
    origin = request.headers.get("Origin")
    if origin is None or not is_websocket_upgrade(request.headers):
        return
    if not request.app[EDGE].origin_allowed(origin, browser_external(request)):
        exc = Forbidden(f"websocket from foreign Origin {origin[:100]!r}; add it with --whitelist-domain")
        audit("denied", request, reason=exc.detail)
        raise exc


def _policy(request: web.Request, provider: str) -> Policy:
    """The rules of the provider that signed the session in (or issued the bearer token): a session
    of one provider never passes by another's rules."""
    found = request.app[POLICIES].get(provider)
    if found is None:
        raise NotAuthenticated(f"session of provider {provider[:40]!r}, which is not configured")
    return found


async def _fresh(request: web.Request, session: Session) -> Session:
    """The session, refreshed first when due; the new or cleared cookie goes on whatever response."""
    app = request.app
    refresher = app[REFRESHER]
    state = refresh_state(session, refresher.policy, app[CLOCK]())
    if state == "fresh":
        return session
    if state == "dead":
        request[SET_COOKIES] = await clear_session(request)
        raise NotAuthenticated("session tokens expired and there is no refresh token")
    counted = app[METRICS].refresh[session.provider]
    try:
        fresh = await refresher.refresh(session)
    except RefreshSuperseded:
        counted.superseded.inc()
        raise  # an old cookie: the browser holds the refreshed one, so nothing may clear it
    except (RefreshRefused, LoginFailed, Forbidden) as exc:
        # Refused, or new tokens that fail validation: the session ends and the person signs in again.
        counted.fatal.inc()
        request[SET_COOKIES] = await clear_session(request)
        reason = exc.error if isinstance(exc, RefreshRefused) else exc.detail
        audit("refresh_failed", request, identity=session.identity, reason=reason)
        if isinstance(exc, Forbidden):
            raise
        raise NotAuthenticated(f"session ended: refresh failed ({reason})") from exc
    except Exception:
        counted.transient.inc()
        raise
    if fresh is session:  # the provider or the shared state is down for now: the session stays
        counted.transient.inc()
        return fresh
    counted.ok.inc()
    request[SET_COOKIES] = await save_session(request, fresh)
    return fresh


async def _bearer(request: web.Request) -> tuple[str, Identity, Tokens]:
    """--skip-jwt-bearer-tokens: a verified `Authorization: Bearer` JWT stands in for the cookie;
    answers the id of the provider whose claim mapping and rules apply."""
    verifier = request.app.get(BEARER)
    token = bearer_token(request.headers.get("Authorization", "")) if verifier else None
    if verifier is None or token is None:
        raise NotAuthenticated("no valid session cookie")
    try:
        provider_id, claims = await verifier.verify(token)
        identity = request.app[PROVIDERS].get(provider_id).claims.identity(claims)
    except (NotAuthenticated, Forbidden, LoginFailed) as exc:
        audit("bearer_refused", request, reason=exc.detail)
        raise
    return provider_id, identity, Tokens(id_token=token)


async def stashed_cookies(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: add the cookies a handler stashed in SET_COOKIES, on any response."""
    cookies = request.get(SET_COOKIES)
    if cookies:
        # aiohttp has already turned response.cookies into headers when this signal runs.
        scratch = web.Response()
        apply_cookies(scratch, cookies, scheme=browser_scheme(request))
        for morsel in scratch.cookies.values():
            response.headers.add("Set-Cookie", morsel.output(header="")[1:])
