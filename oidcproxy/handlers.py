"""Handlers: /oauth2/* endpoints, ping/ready, and the gate in front of every other path.

Thin: read the request, call the domain, build the response. Status codes come from the error tree.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote

from aiohttp import web

from oidcproxy.appkeys import CLAIMS, CLOCK, LOGIN, OIDC, POLICY, PROXY, SESSIONS, SETTINGS
from oidcproxy.cookies import SetCookie
from oidcproxy.errors import IdPUnavailable, NotAuthenticated
from oidcproxy.forwarded import callback_url
from oidcproxy.login import safe_return_to
from oidcproxy.middleware import page, redirect
from oidcproxy.model import Session
from oidcproxy.pages import sign_in_page, signed_out_page

__all__ = [
    "apply_cookies",
    "auth",
    "callback",
    "gate",
    "ping",
    "ready",
    "sign_in",
    "sign_out",
    "start",
    "userinfo",
]

log = logging.getLogger("oidcproxy")


def apply_cookies(response: web.StreamResponse, cookies: Iterable[SetCookie]) -> None:
    for c in cookies:
        response.set_cookie(
            c.name,
            c.value,
            max_age=c.max_age,
            path=c.path,
            domain=c.domain or None,
            secure=c.secure,
            httponly=c.httponly,
            samesite=c.samesite.capitalize(),
        )


async def sign_in(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    rd = safe_return_to(request.query.get("rd"))
    if settings.skip_provider_button:
        return await start(request)
    response = page(sign_in_page(settings.provider_display_name, "/oauth2/start?rd=" + quote(rd, safe="")))
    apply_cookies(response, await request.app[SESSIONS].clear(request.cookies))
    return response


async def start(request: web.Request) -> web.StreamResponse:
    app = request.app
    return_to = safe_return_to(request.query.get("rd"))
    redirect_uri = callback_url(app[SETTINGS].redirect_url, request.scheme, request.host)
    attempt, login_cookie = app[LOGIN].begin(return_to, redirect_uri)
    url = await app[OIDC].authorize_url(
        attempt.redirect_uri, attempt.state, attempt.nonce, attempt.code_challenge
    )
    response = redirect(url)
    # No session fixation: starting a login drops whatever session the browser had.
    apply_cookies(response, [*await app[SESSIONS].clear(request.cookies), login_cookie])
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    app = request.app
    done = app[LOGIN].finish(request.cookies, request.query)
    attempt = done.attempt
    tokens, claims = await app[OIDC].exchange(
        done.code, redirect_uri=attempt.redirect_uri, verifier=attempt.verifier, nonce=attempt.nonce
    )
    identity = app[CLAIMS].identity(claims)
    app[POLICY].require(identity)
    now = app[CLOCK]()
    session = Session(identity, tokens, created_at=now, expires_at=now + app[SETTINGS].cookie_expire)
    log.info("signed in: %s (sub %s)", identity.email or identity.user, identity.subject)
    response = redirect(done.attempt.return_to)
    apply_cookies(response, await app[SESSIONS].save(session, request.cookies))
    apply_cookies(response, [app[LOGIN].clear(done.attempt.state)])
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    rd = request.query.get("rd")
    response = redirect(safe_return_to(rd)) if rd else page(signed_out_page("/oauth2/sign_in"))
    apply_cookies(response, await request.app[SESSIONS].clear(request.cookies))
    return response


def _session(request: web.Request) -> Session:
    session = request.app[SESSIONS].open(request.cookies)
    if session is None:
        raise NotAuthenticated("no valid session cookie")
    return session


async def userinfo(request: web.Request) -> web.StreamResponse:
    ident = _session(request).identity
    body = {
        "user": ident.user,
        "email": ident.email,
        "preferred_username": ident.preferred_username,
        "groups": list(ident.groups),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def auth(request: web.Request) -> web.StreamResponse:
    """NGINX auth_request: 202 signed in and allowed, 401 not signed in, 403 not allowed. No redirects."""
    session = request.app[SESSIONS].open(request.cookies)
    if session is None:
        return web.Response(status=401, headers={"Cache-Control": "no-store"})
    if not request.app[POLICY].evaluate(session.identity).allowed:
        return web.Response(status=403, headers={"Cache-Control": "no-store"})
    return web.Response(status=202, headers={"Cache-Control": "no-store"})


async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="OK")


async def ready(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[OIDC].metadata()
    except IdPUnavailable as exc:
        log.warning("not ready: %s", exc.detail)
        return web.Response(status=503, text="provider discovery not loaded")
    return web.Response(text="OK")


async def gate(request: web.Request) -> web.StreamResponse:
    """Every path that is not ours: a valid, allowed session, or no further."""
    session = _session(request)
    request.app[POLICY].require(session.identity)
    return await request.app[PROXY].handle(request, session.identity, session.tokens)
