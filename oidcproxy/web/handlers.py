"""Handlers: /oauth2/* endpoints, ping/ready, and the gate in front of every other path.

Thin: read the request, call the domain, build the response. Status codes come from the error tree.
What was decided (auth outcomes, logins, refreshes, session store calls) is told to app[METRICS].
Imports the domain parts, appkeys and middleware; never app (assembly) or headerlimit.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from oidcproxy.authz import Policy
from oidcproxy.coordination import Revocations
from oidcproxy.errors import (
    Forbidden,
    IdPUnavailable,
    LoginFailed,
    LogoutTokenRefused,
    NotAuthenticated,
    ProxyError,
    RefreshRefused,
    RefreshSuperseded,
    SignOutFailed,
    StateUnavailable,
    TokenInvalid,
    TokenRefused,
)
from oidcproxy.forwarded import External, Original, callback_url, external_base
from oidcproxy.login import Callback, return_target
from oidcproxy.model import Identity, Session, Tokens, scoped
from oidcproxy.oidc import Provider, authorization_iss_problem, bearer_token, end_session_url, refresh_state
from oidcproxy.proxy import auth_request_headers, is_websocket_upgrade
from oidcproxy.sessions.cookies import SetCookie, secure_attribute
from oidcproxy.sessions.store import MISS
from oidcproxy.web.appkeys import (
    BEARER,
    CLOCK,
    DRAINING,
    EDGE,
    IDENTITY,
    LOGIN,
    METRICS,
    POLICIES,
    PROVIDERS,
    PROXY,
    REFRESHER,
    REVOKED,
    SESSIONS,
    SET_COOKIES,
    SETTINGS,
    SIGN_OUTS,
)
from oidcproxy.web.audit import audit
from oidcproxy.web.metrics import NO_PROVIDER
from oidcproxy.web.middleware import page, pages, redirect, wants_html

__all__ = [
    "SIGNED_OUT_PATH",
    "apply_cookies",
    "auth",
    "backchannel_logout",
    "callback",
    "gate",
    "ping",
    "ready",
    "sign_in",
    "sign_out",
    "signed_out",
    "start",
    "stashed_cookies",
    "userinfo",
]

log = logging.getLogger("oidcproxy")

T = TypeVar("T")

#: Where the provider sends the browser back after RP-initiated logout: register it there.
SIGNED_OUT_PATH = "/oauth2/signed_out"


def apply_cookies(
    response: web.StreamResponse, cookies: Iterable[SetCookie], *, scheme: str = "http"
) -> None:
    """Set the cookies; `scheme` is the browser's (see `_scheme`), which can make them Secure."""
    for c in cookies:
        response.set_cookie(
            c.name,
            c.value,
            max_age=c.max_age,
            path=c.path,
            domain=c.domain or None,
            secure=secure_attribute(c, scheme),
            httponly=c.httponly,
            samesite=c.samesite.capitalize(),
        )


async def sign_in(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    rd = quote(_return_to(request), safe="")
    providers = request.app[PROVIDERS]
    if settings.skip_provider_button and providers.single:
        return await start(request)
    if providers.single:
        html = (await pages(request)).sign_in("/oauth2/start?rd=" + rd)
    else:  # the chooser: one button a provider, in the order configured
        choices = [(f"/oauth2/start?provider={quote(p.id)}&rd={rd}", p.display_name) for p in providers]
        html = (await pages(request)).choose(choices)
    response = page(html)
    apply_cookies(response, await _clear(request), scheme=_scheme(request))
    return response


async def start(request: web.Request) -> web.StreamResponse:
    """`/oauth2/start?provider=ID`; without one, the only provider, or the chooser when several."""
    app = request.app
    providers = app[PROVIDERS]
    if not providers.single and "provider" not in request.query:
        return redirect("/oauth2/sign_in?rd=" + quote(_return_to(request), safe=""))
    provider = providers.get(request.query.get("provider", providers.first.id))
    return_to = _return_to(request)
    ext = _external(request)
    configured = provider.client.config.redirect_url or app[SETTINGS].redirect_url
    path_id = "" if providers.single else provider.id
    redirect_uri = callback_url(configured, ext.scheme, ext.host, path_id)
    attempt, login_cookie = app[LOGIN].begin(return_to, redirect_uri, provider.id)
    url = await provider.client.authorize_url(
        attempt.redirect_uri, attempt.state, attempt.nonce, attempt.code_challenge
    )
    response = redirect(url)
    # No session fixation: starting a login drops whatever session the browser had.
    apply_cookies(response, [*await _clear(request), login_cookie], scheme=ext.scheme)
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
    scheme = _scheme(request)
    apply_cookies(response, await _save(request, session), scheme=scheme)
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


async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session here, revoke it everywhere, and (RP-initiated logout) at the provider too."""
    app = request.app
    session = await _open(request)
    provider = _provider_of(request, session)  # RP-initiated logout and revocation go to its provider
    at = app[SIGN_OUTS][provider.id]
    endpoint = await at.end_session_endpoint() if app[SETTINGS].provider_sign_out else ""
    if session is not None:
        # a copy of this cookie is refused from now on
        await _revoke(request, sid=scoped(session.provider, session.sid))
        at.revoke_later(session.tokens, at_provider=bool(endpoint))
    audit(
        "sign_out",
        request,
        identity=session.identity if session else None,
        had_session=bool(session),
        provider=provider.id,
    )
    rd = request.query.get("rd")
    if endpoint:
        response = redirect(_end_session(request, endpoint, session, provider.client.config.client_id))
    elif rd:
        response = redirect(_return_to(request))
    else:
        response = page((await pages(request)).signed_out("/oauth2/sign_in"))
    apply_cookies(response, await _clear(request), scheme=_scheme(request))
    return response


def _provider_of(request: web.Request, session: Session | None) -> Provider:
    """The session's provider (the first one for no session, or a provider no longer configured)."""
    providers = request.app[PROVIDERS]
    if session is None:
        return providers.first
    try:
        return providers.for_session(session)
    except NotAuthenticated:
        return providers.first


def _end_session(request: web.Request, endpoint: str, session: Session | None, client_id: str) -> str:
    """The provider's end_session_endpoint, told to send the browser back to SIGNED_OUT_PATH."""
    app = request.app
    ext = _external(request)
    configured = app[SETTINGS].redirect_url
    base = configured.rsplit("/oauth2/", 1)[0] if configured else external_base(ext.scheme, ext.host)
    back_to = _return_to(request) if request.query.get("rd") else ""
    return end_session_url(
        endpoint,
        id_token=session.tokens.id_token if session is not None else "",
        client_id=client_id,
        post_logout_redirect_uri=base + SIGNED_OUT_PATH,
        state=app[LOGIN].sign_out_state(back_to),
    )


async def signed_out(request: web.Request) -> web.StreamResponse:
    """The provider's way back from RP-initiated logout: on to `rd`, else our signed-out page."""
    error = request.query.get("error")
    if error:
        detail = request.query.get("error_description", "")[:200]
        raise SignOutFailed(f"provider returned error={error[:100]!r} {detail!r} after sign-out")
    target = request.app[LOGIN].sign_out_target(request.query.get("state", ""))
    if target:
        return redirect(target)
    return page((await pages(request)).signed_out("/oauth2/sign_in", at_provider=True))


async def backchannel_logout(request: web.Request) -> web.StreamResponse:
    """OIDC Back-Channel Logout 1.0: a verified logout token ends the sessions it names (200), or 400."""
    form = await request.post()
    token = form.get("logout_token")
    if not isinstance(token, str) or not token:
        raise LogoutTokenRefused("back-channel logout without a logout_token")
    provider = request.app[PROVIDERS].of_token(token)  # its iss; verified by that provider next
    done = await request.app[SIGN_OUTS][provider.id].verify(token)
    # Section 2.7: a sid names one provider session; a sub alone, every session of that person. Both
    # scoped to the provider: a logout token from one provider never ends another's sessions.
    if done.sid:
        await _revoke(request, sid=scoped(provider.id, done.sid))
    else:
        await _revoke(request, sub=scoped(provider.id, done.sub))
    audit(
        "session_revoked",
        request,
        reason="back-channel logout",
        sid=done.sid,
        revoked_sub=done.sub,
        provider=provider.id,
    )
    return web.Response(status=200, headers={"Cache-Control": "no-store"})


async def _revoke(request: web.Request, *, sid: str = "", sub: str = "") -> None:
    """Add to the revocation list (this process refuses at once even if the shared state is down) and
    delete what the session store keeps of those sessions (Redis: the entries; cookies: nothing)."""
    try:
        await request.app[REVOKED].revoke(sid=sid, sub=sub)
    except StateUnavailable as exc:
        log.warning("revocation not shared with the other workers: %s", exc.detail)
    try:
        await request.app[SESSIONS].end_sessions(subject=sub, sid=sid)
    except StateUnavailable as exc:  # StoreUnavailable: the revocation list still refuses them
        log.warning("session store could not end the sessions: %s", exc.detail)


def _scheme(request: web.Request) -> str:
    return _external(request).scheme


def _external(request: web.Request) -> External:
    """Scheme and host as the browser used them (forwarded headers from trusted proxies only)."""
    peer = request.remote or ""
    return request.app[EDGE].external(request.headers, peer=peer, scheme=request.scheme, host=request.host)


def _return_to(request: web.Request) -> str:
    """`rd`: a local path, or a full URL on our own host or a --whitelist-domain (auth-signin)."""
    ext = _external(request)
    return return_target(request.query.get("rd"), lambda url: request.app[EDGE].safe_redirect(url, ext))


async def _open(request: web.Request) -> Session | None:
    """The request's session: by the raw Cookie header from the store's cache (no I/O), else fetched;
    None when it was revoked (signed out, or logged out by the provider: a dict lookup, no I/O).

    A store fault raises StoreUnavailable (503): it is never taken for "no session", which would
    send a signed-in person to sign in again, and back, in a loop. Only a fetch (the store's I/O) is
    in the session store metrics (`load`): the cache hit is the hot path and records nothing.
    """
    app = request.app
    store = app[SESSIONS]
    header = request.headers.get("Cookie")
    session = store.peek(header, lambda: request.cookies)
    if session is MISS:
        session = await _stored(request, "load", store.fetch(header, lambda: request.cookies))
    if session is not None and app[REVOKED].revoked(session):
        log.info("session refused: revoked (sub %s)", session.identity.subject)
        return None
    return session


async def _session(request: web.Request) -> Session:
    session = await _open(request)
    if session is None:
        raise NotAuthenticated("no valid session cookie")
    return session


async def userinfo(request: web.Request) -> web.StreamResponse:
    ident = (await _session(request)).identity
    body = {
        "user": ident.user,
        "email": ident.email,
        "preferred_username": ident.preferred_username,
        "groups": list(ident.groups),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def _save(request: web.Request, session: Session) -> list[SetCookie]:
    metrics = request.app[METRICS]
    cookies = await _stored(request, "save", request.app[SESSIONS].save(session, request.cookies))
    metrics.cookie_bytes.observe(sum(len(c.name) + len(c.value) + 1 for c in cookies if c.value))
    return cookies


async def _clear(request: web.Request) -> list[SetCookie]:
    return await _stored(request, "clear", request.app[SESSIONS].clear(request.cookies))


async def _stored(request: web.Request, op: str, call: Awaitable[T]) -> T:
    """A session store call (`op`: load, save, clear), counted and timed."""
    metrics = request.app[METRICS]
    started = time.perf_counter()
    try:
        done = await call
    except Exception:
        metrics.store_outcome[op, "error"].inc()
        raise
    metrics.store_seconds[op].observe(time.perf_counter() - started)
    metrics.store_outcome[op, "ok"].inc()
    return done


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
    session = await _open(request)
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
    ext = _external(request)
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
        session = await _open(request)
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
    if not request.app[EDGE].origin_allowed(origin, _external(request)):
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
        request[SET_COOKIES] = await _clear(request)
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
        request[SET_COOKIES] = await _clear(request)
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
    request[SET_COOKIES] = await _save(request, fresh)
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
        apply_cookies(scratch, cookies, scheme=_scheme(request))
        for morsel in scratch.cookies.values():
            response.headers.add("Set-Cookie", morsel.output(header="")[1:])
