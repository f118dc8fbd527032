"""431 for oversized request headers, as the error page or JSON, before any handler runs.

aiohttp's parser refuses a header line over max_field_size before any handler or middleware runs,
answering a bare 400; `answer_431` installs a server whose request handler answers 431 instead, and
checks the total size of the headers once parsed. Imports errors and the rest of `web`.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_request import BaseRequest

from oidcproxy.errors import HeadersTooLarge
from oidcproxy.web.appkeys import SETTINGS
from oidcproxy.web.middleware import error_response, load_pages
from oidcproxy.web.pages import Pages

__all__ = ["answer_431", "header_limits"]

log = logging.getLogger("oidcproxy")


# -- 431 for oversized headers. aiohttp's parser refuses a header line over max_field_size before any
# handler or middleware runs, answering a bare 400 from RequestHandler.handle_error; the app's
# _make_handler is the one hook both web.run_app and test servers go through, so a Server that builds
# a RequestHandler answering 431 is installed there. The total size is checked once parsed.
def header_limits(max_line: int) -> dict[str, Any]:
    return {"max_field_size": max_line, "max_line_size": max_line, "max_headers": 256}


class _HeaderLimitProtocol(web_protocol.RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        too_many = isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc)
        if not isinstance(exc, LineTooLong) and not too_many:
            return super().handle_error(request, status, exc, message)
        # Not str(exc): it quotes the start of the line, which may be a cookie or a bearer token.
        why = "too many header lines" if too_many else "a header line over --max-header-size"
        pages = getattr(self._manager, "pages", None)
        # The parser failed before any header was kept, so Accept is unknown: the page, which any
        # client can read (an oversized Cookie line from a browser is the commonest cause).
        return _too_large(request.remote or "", why, pages)


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


class _HeaderLimitServer(web.Server):
    def __init__(self, *args: Any, total_limit: int, pages: Pages | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.request_handler
        self._total_limit = total_limit
        self.pages = pages

        async def checked(request: BaseRequest) -> web.StreamResponse:
            size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
            if size > self._total_limit:
                html = "text/html" in request.headers.get("Accept", "")
                why = f"{size} bytes of headers in all"
                return _too_large(request.remote or "", why, self.pages if html else None)
            expect = request.headers.get("Expect")
            if expect is not None and expect.lower() != "100-continue":
                # aiohttp's own 417 quotes the value, and a non-ASCII one made it a 500 (fuzzing found it).
                return web.Response(status=417, text="Only Expect: 100-continue is understood.")
            return await inner(request)

        self.request_handler = checked

    def __call__(self) -> web_protocol.RequestHandler:
        return _HeaderLimitProtocol(self, loop=self._loop, **self._kwargs)


def answer_431(app: web.Application, max_line: int) -> None:
    loaded: list[Pages] = []  # the error page's look, read at startup (runners start before serving)

    async def load(app: web.Application) -> None:
        loaded.append(await load_pages(app[SETTINGS]))

    def make_handler(*, loop: Any = None, **kwargs: Any) -> web.Server:
        plain = original(loop=loop, **kwargs)
        return _HeaderLimitServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            total_limit=2 * max_line,
            pages=loaded[-1] if loaded else None,
            **plain._kwargs,
        )

    app.on_startup.append(load)

    original = app._make_handler
    setattr(app, "_make_handler", make_handler)  # noqa: B010 - instance hook, see above
