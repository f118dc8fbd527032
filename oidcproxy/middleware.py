"""One middleware: a request id, and every ProxyError rendered in one place (HTML or JSON).

A NotAuthenticated on a browser navigation becomes a redirect to sign in; API clients get JSON 401.
Details go to the log with the request id, never to the page.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from oidcproxy.appkeys import EDGE, REQUEST_ID, SETTINGS
from oidcproxy.errors import LoginFailed, NotAuthenticated, ProxyError
from oidcproxy.pages import error_page

__all__ = ["PAGE_HEADERS", "errors_and_ids", "page", "redirect", "wants_html"]

log = logging.getLogger("oidcproxy")

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; frame-ancestors 'none'",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, **PAGE_HEADERS})


def page(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", headers=PAGE_HEADERS)


@web.middleware
async def errors_and_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")
    if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
        rid = secrets.token_hex(8)
    request[REQUEST_ID] = rid
    try:
        return await handler(request)
    except ProxyError as exc:
        return _render(request, exc, rid)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error [request_id=%s]", rid)
        return _render(request, ProxyError("unhandled"), rid)


def _render(request: web.Request, exc: ProxyError, rid: str) -> web.StreamResponse:
    log.log(
        logging.INFO if exc.status < 500 else logging.WARNING,
        "%s %s -> %d %s: %s [request_id=%s]",
        request.method,
        request.path,
        exc.status,
        type(exc).__name__,
        exc.detail or exc.public,
        rid,
    )
    navigation = request.method in ("GET", "HEAD") and wants_html(request)
    edge = request.app.get(EDGE)
    if navigation and edge is not None and edge.is_api(request.method, request.rel_url.raw_path):
        navigation = False  # --api-route: a 401, never a sign-in redirect
    if isinstance(exc, NotAuthenticated) and navigation:
        return redirect("/oauth2/sign_in?rd=" + quote(request.raw_path, safe=""))
    if not wants_html(request):
        body = {"error": type(exc).__name__, "status": exc.status, "message": exc.public, "request_id": rid}
        return web.json_response(body, status=exc.status, headers={"Cache-Control": "no-store"})
    retry = "/oauth2/start" if isinstance(exc, LoginFailed | NotAuthenticated) else ""
    debug = exc.detail if request.app[SETTINGS].show_debug_on_error else ""
    return page(error_page(exc.status, exc.title, exc.public, rid, retry, debug), status=exc.status)
