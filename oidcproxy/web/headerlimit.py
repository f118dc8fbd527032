"""431 for oversized request headers, as the error page or JSON, before any handler runs.

aiohttp's parser refuses a header line over max_field_size, or more than max_headers lines, before any
handler or middleware runs, answering a bare 400. `answer_431` turns those into 431, checks the total
size of the headers once parsed, and refuses an Expect other than 100-continue, all through the hook
in `aiohttp_internals` (the one module that touches aiohttp's private API). Imports errors,
aiohttp_internals and the rest of `web`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_request import BaseRequest

from oidcproxy.aiohttp_internals import Handler, ParseErrorAnswer, hook_servers, too_many_headers
from oidcproxy.errors import HeadersTooLarge
from oidcproxy.web.middleware import error_response, load_pages
from oidcproxy.web.pages import Pages

__all__ = ["answer_431", "header_limits"]

log = logging.getLogger("oidcproxy")


def header_limits(max_line: int) -> dict[str, Any]:
    """The app's handler_args: aiohttp's parser limits, checked before any request reaches us."""
    return {"max_field_size": max_line, "max_line_size": max_line, "max_headers": 256}


def answer_431(app: web.Application, max_line: int) -> None:
    """A line over `max_line`, over 256 lines, or over 2 * `max_line` bytes in all: 431."""
    loaded: list[Pages] = []  # the error page's look, read at startup (runners start before serving)

    async def load(app: web.Application) -> None:
        loaded.append(await load_pages(app))

    def pages() -> Pages | None:
        return loaded[-1] if loaded else None

    app.on_startup.append(load)
    hook_servers(app, wrap=lambda inner: _checked(inner, 2 * max_line, pages), answer=_parse_error(pages))


def _parse_error(pages: Callable[[], Pages | None]) -> ParseErrorAnswer:
    def answer(request: BaseRequest, exc: BaseException | None) -> web.StreamResponse | None:
        too_many = too_many_headers(exc)
        if not isinstance(exc, LineTooLong) and not too_many:
            return None  # aiohttp's own answer
        # Not str(exc): it quotes the start of the line, which may be a cookie or a bearer token.
        why = "too many header lines" if too_many else "a header line over --max-header-size"
        # The parser failed before any header was kept, so Accept is unknown: the page, which any
        # client can read (an oversized Cookie line from a browser is the commonest cause).
        return _too_large(request.remote or "", why, pages())

    return answer


def _checked(inner: Handler, total_limit: int, pages: Callable[[], Pages | None]) -> Handler:
    async def checked(request: BaseRequest) -> web.StreamResponse:
        size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
        if size > total_limit:
            html = "text/html" in request.headers.get("Accept", "")
            why = f"{size} bytes of headers in all"
            return _too_large(request.remote or "", why, pages() if html else None)
        expect = request.headers.get("Expect")
        if expect is not None and expect.lower() != "100-continue":
            # aiohttp's own 417 quotes the value, and a non-ASCII one made it a 500 (fuzzing found it).
            return web.Response(status=417, text="Only Expect: 100-continue is understood.")
        return await inner(request)

    return checked


def _too_large(peer: str, why: str, pages: Pages | None) -> web.Response:
    """431 as the error page (`pages`) or as JSON (None), with a request id in the answer and the log."""
    rid = secrets.token_hex(8)
    log.warning(
        "431 to %s: request headers too large (%s); raise --max-header-size if legitimate [request_id=%s]",
        peer,
        why,
        rid,
    )
    public = (
        f"{HeadersTooLarge.public} A header line may be at most --max-header-size bytes, and all "
        "headers together twice that. Large sessions or bearer tokens are the usual cause."
    )
    response = error_response(HeadersTooLarge(why, public=public), rid, pages)
    response.headers["X-Request-Id"] = rid
    response.force_close()
    return response
