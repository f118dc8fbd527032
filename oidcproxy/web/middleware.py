"""One middleware: a request id, and every ProxyError rendered in one place (HTML or JSON).

A NotAuthenticated on a browser navigation becomes a redirect to sign in; API clients get JSON 401.
An error after a response has started (see `remember_started`) is never rendered: the connection is cut.
Details go to the log with the request id, never to the page (unless --show-debug-on-error).
`pages(request)` gives the rendered-page maker for the app's settings, loaded once off the event loop.
Imports appkeys, logs, pages, config, errors and forwarded.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from oidcproxy.errors import (
    BadRequest,
    Forbidden,
    IdPUnreachable,
    LoginFailed,
    NotAuthenticated,
    ProxyError,
    ResponseCut,
)
from oidcproxy.forwarded import target_form
from oidcproxy.web.appkeys import EDGE, PAGES, REQUEST_ID, SETTINGS, STARTED
from oidcproxy.web.logs import REQUEST_ID as REQUEST_ID_VAR
from oidcproxy.web.pages import PageOptions, Pages

__all__ = [
    "PAGE_HEADERS",
    "error_response",
    "errors_and_ids",
    "load_pages",
    "page",
    "pages",
    "redirect",
    "remember_started",
    "request_id",
    "wants_html",
]

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


async def pages(request: web.Request) -> Pages:
    """The page renderer for this app's settings; templates and logo are read once, in a thread."""
    return await load_pages(request.app)


async def load_pages(app: web.Application) -> Pages:
    """`pages()` for code that runs outside a request (the 431 answer is built before the app)."""
    s = app[SETTINGS]
    options = PageOptions(
        display_name=s.provider_display_name,
        banner=s.banner,
        footer=s.footer,
        logo=s.custom_sign_in_logo,
        templates_dir=s.custom_templates_dir,
    )
    return await app[PAGES].get(options)


@web.middleware
async def errors_and_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id(request)
    request[REQUEST_ID] = rid
    token = REQUEST_ID_VAR.set(rid)  # every log record made while handling this carries it
    try:
        return await _handle(request, handler, rid)
    finally:
        REQUEST_ID_VAR.reset(token)


def request_id(request: web.Request) -> str:
    """The request's id: a trusted proxy's X-Request-Id (NGINX ingress sets one), else a new one.

    A client's own X-Request-Id is not taken: it would let anyone write what they like into our logs
    and the upstream's under the id of another request. Well-formed means 1-64 letters, digits and `-`.
    """
    sent = request.headers.get("X-Request-Id", "")
    if sent and len(sent) <= 64 and sent.replace("-", "").isalnum() and sent.isascii():
        edge = request.app.get(EDGE)
        if edge is not None and edge.trusts(request.remote or ""):
            return sent
    return secrets.token_hex(8)


async def _handle(request: web.Request, handler: Handler, rid: str) -> web.StreamResponse:
    try:
        _origin_form(request)
        return await handler(request)
    except Exception as exc:
        started = request.get(STARTED)
        if started is not None:
            return _cut(request, started, exc, rid)
        if isinstance(exc, ProxyError):
            return await _render(request, exc, rid)
        if isinstance(exc, web.HTTPException):
            raise
        log.exception("unhandled error [request_id=%s]", rid)
        return await _render(request, ProxyError("unhandled"), rid)


async def remember_started(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: from now on this request's errors cut the connection (see `_cut`)."""
    request[STARTED] = response


def _cut(request: web.Request, response: web.StreamResponse, exc: Exception, rid: str) -> web.StreamResponse:
    """An error after the status line went out: close the connection, so the client sees a truncated
    transfer (RFC 9112 8: an incomplete message), never a second response spliced into the first, nor
    a chunked body's last chunk. Whatever was already written is still delivered before the close."""
    if isinstance(exc, ResponseCut | ConnectionError):
        detail = exc.detail if isinstance(exc, ResponseCut) else f"{type(exc).__name__}: {exc}"
        log.warning(
            "%s %s -> %d cut short: %s [request_id=%s]",
            request.method,
            request.path,
            response.status,
            detail,
            rid,
        )
    else:
        log.exception(
            "unhandled error after %d was sent; connection cut [request_id=%s]", response.status, rid
        )
    response.force_close()
    if request.transport is not None:
        request.transport.close()
    # aiohttp finishes this response: its end (a last chunk) cannot be written to a closing transport.
    return response


def _origin_form(request: web.Request) -> None:
    """A reverse proxy serves paths. An absolute-form target (`GET http://other.host/x`) would make
    aiohttp's request.host the named host; asterisk- and authority-form (CONNECT) name no path."""
    form = target_form(request.raw_path)
    if form != "origin":
        raise BadRequest(f"{form}-form request target refused: {request.raw_path[:100]!r}", public=_TARGET)


_TARGET = "The request must name a path on this server (origin-form), not a host or `*`."


async def _render(request: web.Request, exc: ProxyError, rid: str) -> web.StreamResponse:
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
        return error_response(exc, rid, None)
    debug = exc.detail if request.app[SETTINGS].show_debug_on_error else ""
    return error_response(exc, rid, await pages(request), action=_next_step(request, exc), debug=debug)


def error_response(
    exc: ProxyError,
    rid: str,
    rendered: Pages | None,
    *,
    action: tuple[str, str] | None = None,
    debug: str = "",
) -> web.Response:
    """The error as JSON, or as the HTML error page when given `rendered` pages."""
    if rendered is None:
        body = {"error": type(exc).__name__, "status": exc.status, "message": exc.public, "request_id": rid}
        response = web.json_response(body, status=exc.status, headers={"Cache-Control": "no-store"})
    else:
        html = rendered.error(exc.status, exc.title, exc.public, rid, action=action, debug=debug)
        response = page(html, status=exc.status)
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def _next_step(request: web.Request, exc: ProxyError) -> tuple[str, str] | None:
    """The one button an error page offers: (url, label), or None."""
    if isinstance(exc, LoginFailed):
        return "/oauth2/start", "Try again"
    if isinstance(exc, NotAuthenticated):
        return "/oauth2/sign_in", "Sign in"
    if isinstance(exc, Forbidden):
        return "/oauth2/sign_in", "Sign in with a different account"
    if exc.status >= 500 and request.method == "GET" and not request.path.startswith("/oauth2/"):
        return request.raw_path, "Try again"
    if isinstance(exc, IdPUnreachable) and request.path in ("/oauth2/start", "/oauth2/sign_in"):
        return request.raw_path, "Try again"
    return None
