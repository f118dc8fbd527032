"""The development provider's HTTP side: its routes (relative, so the app can be served at the root
or mounted with `add_subapp`), the test switches' middleware (`down`, `delay`, `hold`, `padding`, the
request counter), the translation of aiohttp requests into the framework-free `HttpInput` and of
`Reply` back, and the HTML answers' headers. The `DevIdP` itself (state, switches, what each endpoint
decides) is in app.py, whose build_app is `idp_app`; this module names it for typing only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from authlib.oauth2 import OAuth2Error
from multidict import CIMultiDict, MultiDictProxy, MultiMapping

from oidcproxy.idp.config import DevUser
from oidcproxy.idp.pages import LOGIN_FIELDS, error_page
from oidcproxy.idp.server import HttpInput, Reply

if TYPE_CHECKING:
    from oidcproxy.idp.app import DevIdP

__all__ = ["DEV_IDP", "html_page", "idp_app", "to_web", "user_from_form"]

log = logging.getLogger("oidcproxy.idp")


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

#: The app's provider (typed only: app.py, which defines DevIdP, imports this module).
DEV_IDP: web.AppKey[DevIdP] = web.AppKey("oidcproxy_dev_idp")


def idp_app(idp: DevIdP) -> web.Application:
    """The provider's app: its endpoints, relative to where it is served or mounted."""
    app = web.Application(middlewares=[_faults])
    app[DEV_IDP] = idp
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
    return app


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
        assert isinstance(response.body, bytes)  # noqa: S101 - json_response and to_web give bytes
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
        return html_page(error_page("Sign-in refused", detail), 403)
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
    return to_web(reply)


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


def user_from_form(login: Mapping[str, str]) -> tuple[DevUser | None, str]:
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


def html_page(page: str, status: int) -> web.Response:
    return web.Response(text=page, status=status, content_type="text/html", headers=_PAGE_HEADERS)


def to_web(reply: Reply) -> web.Response:
    headers = CIMultiDict(reply.headers)
    if isinstance(reply.body, dict):
        headers["Content-Type"] = "application/json"
        body = json.dumps(reply.body).encode()
        return web.Response(status=reply.status, body=body, headers=headers)
    if reply.body:
        headers.setdefault("Content-Type", "text/html; charset=utf-8")
    return web.Response(status=reply.status, body=reply.body.encode(), headers=headers)
