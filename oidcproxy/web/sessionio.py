"""The request's session and cookies, for every handler: open (peek, else fetch; revoked is none),
save and clear (counted and timed for the metrics), the Set-Cookie headers, and the browser's own
scheme, host and `rd` (forwarded headers from trusted proxies only).
Imports the domain parts, appkeys and metrics; never app, handlers, signin, signout or middleware.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from aiohttp import web

from oidcproxy.errors import NotAuthenticated
from oidcproxy.forwarded import External
from oidcproxy.login import return_target
from oidcproxy.model import Session
from oidcproxy.sessions.cookies import SetCookie, secure_attribute
from oidcproxy.sessions.store import MISS
from oidcproxy.web.appkeys import EDGE, METRICS, REVOKED, SESSIONS

__all__ = [
    "apply_cookies",
    "browser_external",
    "browser_scheme",
    "clear_session",
    "open_session",
    "require_session",
    "safe_rd",
    "save_session",
]

log = logging.getLogger("oidcproxy")

T = TypeVar("T")


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


def browser_scheme(request: web.Request) -> str:
    return browser_external(request).scheme


def browser_external(request: web.Request) -> External:
    """Scheme and host as the browser used them (forwarded headers from trusted proxies only)."""
    peer = request.remote or ""
    return request.app[EDGE].external(request.headers, peer=peer, scheme=request.scheme, host=request.host)


def safe_rd(request: web.Request) -> str:
    """`rd`: a local path, or a full URL on our own host or a --whitelist-domain (auth-signin)."""
    ext = browser_external(request)
    return return_target(request.query.get("rd"), lambda url: request.app[EDGE].safe_redirect(url, ext))


async def open_session(request: web.Request) -> Session | None:
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


async def require_session(request: web.Request) -> Session:
    session = await open_session(request)
    if session is None:
        raise NotAuthenticated("no valid session cookie")
    return session


async def save_session(request: web.Request, session: Session) -> list[SetCookie]:
    metrics = request.app[METRICS]
    cookies = await _stored(request, "save", request.app[SESSIONS].save(session, request.cookies))
    metrics.cookie_bytes.observe(sum(len(c.name) + len(c.value) + 1 for c in cookies if c.value))
    return cookies


async def clear_session(request: web.Request) -> list[SetCookie]:
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
