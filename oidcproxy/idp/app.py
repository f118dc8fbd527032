"""The development provider as an aiohttp application: `DevIdP` (state, test switches, what each
endpoint decides) and `build_app`. Its routes and their middleware are in routes.py; they are
relative, so the app can be served at the root or mounted with `add_subapp`. Every URL it hands out
is derived from `IdPConfig.issuer`. Never imports the proxy's client side.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from authlib.oauth2 import OAuth2Error
from joserfc import jwt
from joserfc.errors import JoseError

from oidcproxy.idp.config import SCOPES, IdPClient, IdPConfig
from oidcproxy.idp.keys import KeyRing
from oidcproxy.idp.logout import authenticate_client, deliver, logout_token, revoke
from oidcproxy.idp.pages import LOGIN_FIELDS, error_page, login_page, signed_out_page
from oidcproxy.idp.routes import DEV_IDP, html_page, idp_app, to_web, user_from_form
from oidcproxy.idp.server import TOKEN_AUTH_METHODS, DevAuthorizationServer, HttpInput
from oidcproxy.idp.store import ProviderSession, Store

__all__ = ["DEV_IDP", "DevIdP", "build_app"]

log = logging.getLogger("oidcproxy.idp")

_CLAIMS = ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "email"]
_CLAIMS += ["email_verified", "name", "preferred_username", "groups"]


class DevIdP:
    """One in-memory OpenID provider. Test switches: `fail_token_endpoint` (answer 503),
    `rotate_keys()`, `token_ttl` (lifetime of new access and ID tokens, seconds), and the
    provider-side faults:

    - `down`: every endpoint answers 503 with Retry-After, as a provider in maintenance does;
    - `jwks_garbage`: the JWKS answers 200 with a body that is not JSON;
    - `padding[path]`: that endpoint's JSON answer grows by this many bytes of filler (`/jwks`,
      `/.well-known/openid-configuration`, `/token`, `/userinfo`): a huge key set, say;
    - `jwks_cache_control`: the JWKS answer's Cache-Control header (none when empty);
    - `delay[path]`: seconds that endpoint waits before it answers (a slow token endpoint, say);
    - `hold[path]`: that endpoint answers only once the event is set (a test decides when).

    Logout: `backchannel_logout(sub=..., sid=...)` ends provider sessions as an administrator would
    and sends each registered client a logout token; `logout_token(...)` makes one (tests).

    `requests` counts requests by path, relative to the issuer, faulty answers included.
    """

    def __init__(self, config: IdPConfig) -> None:
        self.config = config
        self.keys = KeyRing(config.signing_alg)
        self.store = Store()
        self.server = DevAuthorizationServer(config, self.keys, self.store)
        self.fail_token_endpoint = False
        self.token_requests = 0
        self.down = False
        self.jwks_garbage = False
        self.padding: dict[str, int] = {}
        self.jwks_cache_control = ""
        self.delay: dict[str, float] = {}
        self.hold: dict[str, asyncio.Event] = {}
        self.requests: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"DevIdP(issuer={self.config.issuer!r}, {self.store!r})"

    @property
    def token_ttl(self) -> int:
        return int(self.server.access_token_ttl)

    @token_ttl.setter
    def token_ttl(self, seconds: int) -> None:
        self.server.access_token_ttl = seconds
        self.server.id_token_ttl = seconds

    def rotate_keys(self) -> str:
        """Sign with a fresh key from now on; the old keys stay in the JWKS. Returns the new kid."""
        return self.keys.rotate().kid

    def discovery(self) -> dict[str, Any]:
        """OpenID Provider Metadata (OIDC Discovery 1.0, section 3)."""
        at = self.config.endpoint
        return {
            "issuer": self.config.issuer,
            "authorization_endpoint": at("/authorize"),
            "token_endpoint": at("/token"),
            "userinfo_endpoint": at("/userinfo"),
            "jwks_uri": at("/jwks"),
            "end_session_endpoint": at("/end_session"),
            "revocation_endpoint": at("/revoke"),
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.config.signing_alg],
            "scopes_supported": list(SCOPES),
            "claims_supported": _CLAIMS,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
        }

    def build_app(self) -> web.Application:
        return idp_app(self)

    # -- authorization endpoint ---------------------------------------------------------------

    def show_login(self, given: HttpInput) -> web.Response:
        try:
            grant = self.server.get_consent_grant(given, end_user=None)
        except OAuth2Error as error:
            return self._authorize_error(given, error)
        return self._login_form(given, grant.request.client.client_id)

    def finish_login(self, given: HttpInput, login: Mapping[str, str]) -> web.Response:
        """Re-validate the whole authorization request (the hidden fields are client input like
        any other), then issue the code and redirect (RFC 6749 4.1.2)."""
        try:
            grant = self.server.get_consent_grant(given, end_user=None)
        except OAuth2Error as error:
            return self._authorize_error(given, error)
        user, problem = user_from_form(login)
        if user is None:
            return self._login_form(given, grant.request.client.client_id, login, problem)
        grant.request.user = user
        grant.request.sid = sid = secrets.token_urlsafe(16)
        reply = self.server.create_authorization_response(grant.request, user, grant)
        if reply.status in (302, 303):
            client_id = grant.request.client.client_id
            self.store.sessions[sid] = ProviderSession(sid=sid, user=user, client_id=client_id)
        log.info("dev IdP: %s signed in for client %s", user.email, grant.request.client.client_id)
        return to_web(reply)

    def _login_form(
        self,
        given: HttpInput,
        client_id: str,
        login: Mapping[str, str] | None = None,
        problem: str = "",
    ) -> web.Response:
        login = login or {}
        hidden = [(k, v) for k, vs in given.params.items() if k not in LOGIN_FIELDS for v in vs]
        page = login_page(
            self.config.endpoint("/authorize"),
            client_id,
            hidden,
            email=login.get("login_email", ""),
            name=login.get("login_name", ""),
            groups=login.get("login_groups", ""),
            problem=problem,
        )
        return html_page(page, 400 if problem else 200)

    def _authorize_error(self, given: HttpInput, error: OAuth2Error) -> web.Response:
        """RFC 6749 4.1.2.1: redirect with the error only to a redirect URI already validated
        for the client; otherwise tell the person and never redirect."""
        if error.redirect_uri:
            return to_web(self.server.handle_error_response(given, error))
        return html_page(error_page("Invalid sign-in request", error.get_error_description()), 400)

    # -- RP-initiated logout ------------------------------------------------------------------

    def end_session(self, params: Mapping[str, str]) -> web.Response:
        """OIDC RP-Initiated Logout 1.0, section 2 and 3. No server-side session exists to end."""
        client = self.config.client(params.get("client_id", ""))
        if hint := params.get("id_token_hint"):
            claims = self._hint_claims(hint)
            aud = claims.get("aud") if claims is not None else None
            if not isinstance(aud, str) or (client is not None and client.client_id != aud):
                return html_page(error_page("Sign-out failed", "id_token_hint is not valid."), 400)
            client = self.config.client(aud)
            sid = (claims or {}).get("sid")
            if isinstance(sid, str) and sid:
                self.store.end_sessions(sid=sid)
        target = params.get("post_logout_redirect_uri")
        if not target:
            return html_page(signed_out_page(), 200)
        candidates: tuple[IdPClient, ...] = (client,) if client else self.config.clients
        if not any(c.accepts_post_logout_redirect(target) for c in candidates):
            detail = "post_logout_redirect_uri is not registered for this client."
            return html_page(error_page("Sign-out failed", detail), 400)
        if state := params.get("state"):
            target += ("&" if urlsplit(target).query else "?") + urlencode({"state": state})
        return web.Response(status=302, headers={"Location": target, "Cache-Control": "no-store"})

    def _hint_claims(self, hint: str) -> dict[str, Any] | None:
        """The claims of an ID token we issued; its expiry does not matter here (RP-Initiated Logout
        1.0, section 2: the hint may have expired)."""
        try:
            token = jwt.decode(hint, self.keys.verification_keys(), [self.config.signing_alg])
        except (JoseError, ValueError):
            return None
        claims = dict(token.claims)
        return claims if claims.get("iss") == self.config.issuer else None

    # -- back-channel logout and revocation ------------------------------------------------------

    def logout_token(self, client_id: str, *, sub: str = "", sid: str = "", **extra: Any) -> str:
        """A logout token signed with the current key (Back-Channel Logout 1.0, 2.4)."""
        now = self.config.clock()
        return logout_token(self.keys, self.config.issuer, client_id, now, sub=sub, sid=sid, **extra)

    async def backchannel_logout(self, *, sub: str = "", sid: str = "") -> dict[str, int]:
        """End the provider session `sid` (or every one of `sub`), as an administrator would, and
        tell each client with a backchannel_logout_uri; answers each client's HTTP status."""
        ended = self.store.end_sessions(sid=sid, sub=sub)
        statuses: dict[str, int] = {}
        for client in self.config.clients:
            if not client.backchannel_logout_uri:
                continue
            if sid:
                subject = next((e.user.subject for e in ended if e.sid == sid), sub)
                token = self.logout_token(client.client_id, sub=subject, sid=sid)
            else:
                token = self.logout_token(client.client_id, sub=sub)
            statuses[client.client_id] = await deliver(client, token)
        log.info("dev IdP: back-channel logout sent: %s", statuses)
        return statuses

    def revoke(self, authorization: str, form: Mapping[str, str]) -> web.Response:
        """RFC 7009: 200 whether or not the token was known; 401 for a client that fails to sign in."""
        client = authenticate_client(self.config, authorization, form)
        if client is None:
            return web.json_response({"error": "invalid_client"}, status=401)
        revoke(self.store, client, form.get("token", ""))
        return web.json_response({}, headers={"Cache-Control": "no-store"})

    def userinfo(self, authorization: str) -> web.Response:
        """OIDC Core 5.3; errors as RFC 6750 3.1."""
        scheme, _, token = authorization.partition(" ")
        record = None
        if scheme.lower() == "bearer" and token.strip():
            record = self.store.live_access(token.strip(), self.config.clock())
        if record is None:
            challenge = 'Bearer error="invalid_token"'
            return web.json_response(
                {"error": "invalid_token"}, status=401, headers={"WWW-Authenticate": challenge}
            )
        return web.json_response(record.user.claims(), headers={"Cache-Control": "no-store"})


def build_app(config: IdPConfig) -> tuple[web.Application, DevIdP]:
    """A new provider and its app. Serve the app at the root when the issuer has no path, or
    mount it where the issuer's path says: `outer.add_subapp("/dev-idp", app)`."""
    idp = DevIdP(config)
    return idp.build_app(), idp
