"""Signing out: /oauth2/sign_out (here, at the provider, and revoked everywhere), the provider's way
back (/oauth2/signed_out) and OIDC Back-Channel Logout; the revocation list and the store's
end_sessions behind one helper. Imports the domain parts, appkeys, sessionio and middleware; never
app or handlers.
"""

from __future__ import annotations

import logging

from aiohttp import web

from oidcproxy.errors import LogoutTokenRefused, NotAuthenticated, SignOutFailed, StateUnavailable
from oidcproxy.forwarded import external_base
from oidcproxy.model import Session, scoped
from oidcproxy.oidc import Provider, end_session_url
from oidcproxy.web.appkeys import LOGIN, PROVIDERS, REVOKED, SESSIONS, SETTINGS, SIGN_OUTS
from oidcproxy.web.audit import audit
from oidcproxy.web.middleware import page, pages, redirect
from oidcproxy.web.sessionio import (
    apply_cookies,
    browser_external,
    browser_scheme,
    clear_session,
    open_session,
    safe_rd,
)

__all__ = ["SIGNED_OUT_PATH", "backchannel_logout", "sign_out", "signed_out"]

log = logging.getLogger("oidcproxy")

#: Where the provider sends the browser back after RP-initiated logout: register it there.
SIGNED_OUT_PATH = "/oauth2/signed_out"


async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session here, revoke it everywhere, and (RP-initiated logout) at the provider too."""
    app = request.app
    session = await open_session(request)
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
        response = redirect(safe_rd(request))
    else:
        response = page((await pages(request)).signed_out("/oauth2/sign_in"))
    apply_cookies(response, await clear_session(request), scheme=browser_scheme(request))
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
    ext = browser_external(request)
    configured = app[SETTINGS].redirect_url
    base = configured.rsplit("/oauth2/", 1)[0] if configured else external_base(ext.scheme, ext.host)
    back_to = safe_rd(request) if request.query.get("rd") else ""
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
