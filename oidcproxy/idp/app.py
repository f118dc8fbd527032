"""The development provider as an aiohttp application: `DevIdP` (state and test switches) and its
routes. Routes are relative, so the app can be served at the root or mounted with `add_subapp`;
every URL it hands out is derived from `IdPConfig.issuer`. Never imports the proxy's client side.
"""

from __future__ import annotations

import asyncio
import json
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
from multidict import CIMultiDict, MultiDictProxy, MultiMapping

from oidcproxy.idp.config import SCOPES, DevUser, IdPClient, IdPConfig
from oidcproxy.idp.keys import KeyRing
from oidcproxy.idp.logout import authenticate_client, deliver, logout_token, revoke
from oidcproxy.idp.pages import LOGIN_FIELDS, error_page, login_page, signed_out_page
from oidcproxy.idp.server import TOKEN_AUTH_METHODS, DevAuthorizationServer, HttpInput, Reply
from oidcproxy.idp.store import ProviderSession, Store

__all__ = ["DEV_IDP", "DevIdP", "build_app"]

log = logging.getLogger("oidcproxy.idp")

_CLAIMS = ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "email"]
_CLAIMS += ["email_verified", "name", "preferred_username", "groups"]

# Pages that carry a login form must not be cached, framed (clickjacking) or leak the
# authorization request through the Referer header.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


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
        app = web.Application(middlewares=[_faults])
        app[DEV_IDP] = self
        app.router.add_get("/.well-known/openid-configuration", _discovery)
        app.router.add_get("/jwks", _jwks)
        app.router.add_get("/authorize", _authorize_get)
        app.router.add_post("/authorize", _authorize_post)
        app.router.add_post("/token", _token)
        app.router.add_route("GET", "/userinfo", _userinfo)
        app.router.add_route("POST", "/userinfo", _userinfo)
        app.router.add_route("GET", "/end_session", _end_session)
        app.router.add_route("POST", "/end_session", _end_session)
        app.router.add_post("/revoke", _revoke)
        app.on_startup.append(_announce)
        return app

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
        user, problem = _user_from_form(login)
        if user is None:
            return self._login_form(given, grant.request.client.client_id, login, problem)
        grant.request.user = user
        grant.request.sid = sid = secrets.token_urlsafe(16)
        reply = self.server.create_authorization_response(grant.request, user, grant)
        if reply.status in (302, 303):
            client_id = grant.request.client.client_id
            self.store.sessions[sid] = ProviderSession(sid=sid, user=user, client_id=client_id)
        log.info("dev IdP: %s signed in for client %s", user.email, grant.request.client.client_id)
        return _to_web(reply)

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
        return _html(page, 400 if problem else 200)

    def _authorize_error(self, given: HttpInput, error: OAuth2Error) -> web.Response:
        """RFC 6749 4.1.2.1: redirect with the error only to a redirect URI already validated
        for the client; otherwise tell the person and never redirect."""
        if error.redirect_uri:
            return _to_web(self.server.handle_error_response(given, error))
        return _html(error_page("Invalid sign-in request", error.get_error_description()), 400)

    # -- RP-initiated logout ------------------------------------------------------------------

    def end_session(self, params: Mapping[str, str]) -> web.Response:
        """OIDC RP-Initiated Logout 1.0, section 2 and 3. No server-side session exists to end."""
        client = self.config.client(params.get("client_id", ""))
        if hint := params.get("id_token_hint"):
            claims = self._hint_claims(hint)
            aud = claims.get("aud") if claims is not None else None
            if not isinstance(aud, str) or (client is not None and client.client_id != aud):
                return _html(error_page("Sign-out failed", "id_token_hint is not valid."), 400)
            client = self.config.client(aud)
            sid = (claims or {}).get("sid")
            if isinstance(sid, str) and sid:
                self.store.end_sessions(sid=sid)
        target = params.get("post_logout_redirect_uri")
        if not target:
            return _html(signed_out_page(), 200)
        candidates: tuple[IdPClient, ...] = (client,) if client else self.config.clients
        if not any(c.accepts_post_logout_redirect(target) for c in candidates):
            detail = "post_logout_redirect_uri is not registered for this client."
            return _html(error_page("Sign-out failed", detail), 400)
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


DEV_IDP = web.AppKey("oidcproxy_dev_idp", DevIdP)


def build_app(config: IdPConfig) -> tuple[web.Application, DevIdP]:
    """A new provider and its app. Serve the app at the root when the issuer has no path, or
    mount it where the issuer's path says: `outer.add_subapp("/dev-idp", app)`."""
    idp = DevIdP(config)
    return idp.build_app(), idp


async def _announce(app: web.Application) -> None:
    idp = app[DEV_IDP]
    log.warning(
        "development OpenID provider at %s: state is in memory only, a restart invalidates "
        "every code, token and signing key",
        idp.config.issuer,
    )


async def _discovery(request: web.Request) -> web.Response:
    return web.json_response(request.app[DEV_IDP].discovery())


@web.middleware
async def _faults(request: web.Request, handler: Any) -> web.StreamResponse:
    """The test switches `down`, `delay`, `hold`, `padding` and the request counter."""
    idp = request.app[DEV_IDP]
    path = request.path.removeprefix(urlsplit(idp.config.issuer).path)
    idp.requests[path] += 1
    if path in idp.delay:
        await asyncio.sleep(idp.delay[path])
    if path in idp.hold:
        await idp.hold[path].wait()
    if idp.down:
        body = {"error": "temporarily_unavailable", "error_description": "switched off by a test"}
        return web.json_response(body, status=503, headers={"Retry-After": "30"})
    response: web.StreamResponse = await handler(request)
    extra = idp.padding.get(path, 0)
    if extra and isinstance(response, web.Response) and response.content_type == "application/json":
        assert isinstance(response.body, bytes)  # noqa: S101 - json_response and _to_web give bytes
        response.body = json.dumps({**json.loads(response.body), "padding": "x" * extra}).encode()
    return response


async def _jwks(request: web.Request) -> web.Response:
    idp = request.app[DEV_IDP]
    headers = {"Cache-Control": idp.jwks_cache_control} if idp.jwks_cache_control else {}
    if idp.jwks_garbage:
        return web.Response(text="<html>502 Bad Gateway</html>" * 4, headers=headers)
    return web.json_response(idp.keys.jwks(), headers=headers)


async def _authorize_get(request: web.Request) -> web.Response:
    idp = request.app[DEV_IDP]
    return idp.show_login(_input(idp, request, "/authorize", request.query))


async def _authorize_post(request: web.Request) -> web.Response:
    idp = request.app[DEV_IDP]
    if not _same_origin(request.headers.get("Origin"), idp.config.issuer):
        detail = "The form was submitted from another site."
        return _html(error_page("Sign-in refused", detail), 403)
    form = await request.post()
    params = MultiDictProxy(CIMultiDict((k, v) for k, v in form.items() if k not in LOGIN_FIELDS))
    login = {k: v for k, v in form.items() if k in LOGIN_FIELDS and isinstance(v, str)}
    return idp.finish_login(_input(idp, request, "/authorize", params), login)


async def _token(request: web.Request) -> web.Response:
    idp = request.app[DEV_IDP]
    idp.token_requests += 1
    if idp.fail_token_endpoint:
        body = {"error": "temporarily_unavailable", "error_description": "switched off by a test"}
        return web.json_response(body, status=503, headers={"Cache-Control": "no-store"})
    form = await request.post()
    given = _input(idp, request, "/token", form)
    try:
        reply = idp.server.create_token_response(given)
    except OAuth2Error as error:
        reply = idp.server.handle_error_response(given, error)
    return _to_web(reply)


async def _userinfo(request: web.Request) -> web.Response:
    return request.app[DEV_IDP].userinfo(request.headers.get("Authorization", ""))


async def _end_session(request: web.Request) -> web.Response:
    source = await request.post() if request.method == "POST" else request.query
    params = {k: v for k, v in source.items() if isinstance(v, str)}
    return request.app[DEV_IDP].end_session(params)


async def _revoke(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return request.app[DEV_IDP].revoke(request.headers.get("Authorization", ""), fields)


def _input(idp: DevIdP, request: web.Request, path: str, source: MultiMapping[Any]) -> HttpInput:
    params: dict[str, list[str]] = {}
    for key, value in source.items():
        if isinstance(value, str):
            params.setdefault(key, []).append(value)
    return HttpInput(
        method=request.method,
        uri=idp.config.endpoint(path),
        headers=request.headers,
        params=params,
        form={k: v[0] for k, v in params.items()} if request.method == "POST" else {},
    )


def _user_from_form(login: Mapping[str, str]) -> tuple[DevUser | None, str]:
    email = login.get("login_email", "").strip()
    local, at, domain = email.partition("@")
    if not (at and local and domain) or len(email) > 254 or any(c.isspace() for c in email):
        return None, "Enter an email address such as alice@example.com."
    groups = tuple(g.strip() for g in login.get("login_groups", "").split(",") if g.strip())
    return DevUser(email=email, name=login.get("login_name", "").strip()[:200], groups=groups), ""


def _same_origin(origin: str | None, issuer: str) -> bool:
    """Browsers send Origin on form POSTs; a foreign one is a cross-site submission. Clients
    that send none (tests, curl) are allowed: the request is re-validated anyway."""
    if origin is None:
        return True
    parts = urlsplit(issuer)
    default = {"http": 80, "https": 443}[parts.scheme]
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return origin.lower() == f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"


def _html(page: str, status: int) -> web.Response:
    return web.Response(text=page, status=status, content_type="text/html", headers=_PAGE_HEADERS)


def _to_web(reply: Reply) -> web.Response:
    headers = CIMultiDict(reply.headers)
    if isinstance(reply.body, dict):
        headers["Content-Type"] = "application/json"
        body = json.dumps(reply.body).encode()
        return web.Response(status=reply.status, body=body, headers=headers)
    if reply.body:
        headers.setdefault("Content-Type", "text/html; charset=utf-8")
    return web.Response(status=reply.status, body=reply.body.encode(), headers=headers)
