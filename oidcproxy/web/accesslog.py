"""The access log: one line per request, batched, written off the event loop.

aiohttp's default access logger formats each line through its format atoms and makes a LogRecord per
request; behind a queue handler that record is copied and formatted again in a thread that competes
for the GIL. Here a line is one f-string appended to a buffer, and the buffer is written a few times a
second by the default executor: on the hot path that is the whole cost of logging. Query values that
carry secrets (the callback's `code` and `state`, tokens) are never written.

Two formats (--log-format): text, with the app log's timestamp and `k=v` pairs after the classic
request line, and JSON, one object a line, written as one f-string too (string values through the C
JSON escaper): the JSON line costs about what the text line does. --silence-ping-logging and
--exclude-logging-path leave paths out. Imports proxy (the route key), appkeys, audit and logs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import IO, ClassVar
from urllib.parse import parse_qsl, urlencode

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from oidcproxy.proxy import UPSTREAM, Route
from oidcproxy.web.appkeys import IDENTITY, REQUEST_ID
from oidcproxy.web.audit import client_of
from oidcproxy.web.logs import LogFormat, now, stamp

__all__ = ["BatchedAccessLogger", "batched_access_log", "redact_query"]

_SECRET_PARAMS = frozenset(
    {
        "code",
        "state",
        "token",
        "access_token",
        "id_token",
        "id_token_hint",
        "refresh_token",
        "client_secret",
        "password",
        "logout_token",
    }
)
_FLUSH_S = 0.25
_MAX_BUFFER = 512


def redact_query(query: str) -> str:
    """The query string with the values of secret-carrying parameters replaced by `REDACTED`."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
        return query
    return urlencode([(k, "REDACTED" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs])


class _Sink:
    """Lines waiting to be written, and the one flush scheduled for them."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self.scheduled = False

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= _MAX_BUFFER:
            self.flush()
        elif not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(_FLUSH_S, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if not self.lines:
            return
        text, self.lines = "".join(self.lines), []
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self.write, text).add_done_callback(_done)

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _done(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logging.getLogger("oidcproxy").warning("access log write failed: %s", future.exception())


def batched_access_log(
    stream: IO[str] | None = None,
    *,
    fmt: LogFormat = "text",
    silence_ping: bool = False,
    exclude: Iterable[str] = (),
) -> tuple[type[AbstractAccessLogger], Callable[[], None]]:
    """An `access_log_class` writing `fmt` lines to `stream` (stderr), and the call that writes what is
    still buffered (at shutdown, after the event loop has stopped). aiohttp makes one logger per
    connection; they all share the one buffer made here, owned by the caller (serve), not by this
    module. Paths in `exclude` (and /ping, /ready with `silence_ping`) are not logged."""
    sink = _Sink(stream if stream is not None else sys.stderr)
    skipped = frozenset(exclude) | ({"/ping", "/ready"} if silence_ping else frozenset())

    class Logger(BatchedAccessLogger):
        _shared = sink
        format = fmt
        excluded = skipped

    def flush() -> None:
        text, sink.lines = "".join(sink.lines), []
        if text:
            sink.write(text)

    return Logger, flush


class BatchedAccessLogger(AbstractAccessLogger):
    """`access_log_class` for aiohttp (made by `batched_access_log`, for a format and exclusions).

    text: `<time> INFO oidcproxy.access: <client> "<method> <path> HTTP/x.y" <status> <bytes> <ms>ms k=v`
    json: time, level, logger, msg, request_id, user, email, method, host, path, status, duration_ms,
    bytes, upstream, client, user_agent (the keys that are unknown for a request are left out).
    """

    format: ClassVar[LogFormat] = "text"
    excluded: ClassVar[frozenset[str]] = frozenset()

    _shared: ClassVar[_Sink]  # set by batched_access_log

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._sink = self._shared
        self._line = self._json if self.format == "json" else self._text

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.path in self.excluded:
            return
        self._sink.add(self._line(request, response, time))

    def _text(self, request: BaseRequest, response: StreamResponse, time: float) -> str:
        query = redact_query(request.query_string)
        target = f"{request.path}?{query}" if query else request.path
        version = request.version
        line = (
            f'{stamp(now())} INFO oidcproxy.access: {client_of(request)} "{request.method} {target} '
            f'HTTP/{version.major}.{version.minor}" {response.status} {response.body_length} '
            f"{time * 1000:.1f}ms request_id={request.get(REQUEST_ID, '')} host={_v(request.host)}"
        )
        identity = request.get(IDENTITY)
        if identity is not None:
            line += f" user={_v(identity.user)}"
        route = request.get(UPSTREAM)
        if route is not None:
            line += f" upstream={_origin(route)}"
        return line + "\n"

    def _json(self, request: BaseRequest, response: StreamResponse, time: float) -> str:
        query = redact_query(request.query_string)
        path = f"{request.path}?{query}" if query else request.path
        method, status = request.method, response.status
        line = (
            f'{{"time":"{stamp(now())}","level":"info","logger":"oidcproxy.access",'
            f'"msg":{_q(f"{method} {path} {status}")},"request_id":"{request.get(REQUEST_ID, "")}",'
        )
        identity = request.get(IDENTITY)
        if identity is not None:
            line += f'"user":{_q(identity.user)},"email":{_q(identity.email)},'
        line += (
            f'"method":{_q(method)},"host":{_q(request.host)},"path":{_q(path)},"status":{status},'
            f'"duration_ms":{time * 1000:.1f},"bytes":{response.body_length},'
        )
        route = request.get(UPSTREAM)
        if route is not None:
            line += f'"upstream":{_q(_origin(route))},'
        agent = request.headers.get("User-Agent")
        if agent is not None:
            line += f'"user_agent":{_q(agent)},'
        return f'{line}"client":{_q(client_of(request))}}}\n'


# C: a JSON string literal for any str; ASCII-only, so a header's undecodable bytes (surrogates) cannot
# make the write fail.
_q = json.encoder.encode_basestring_ascii


def _v(value: str) -> str:
    """A `k=v` value, quoted when it is empty or holds a space or a quote (as logs.logfmt does)."""
    return value if value and " " not in value and '"' not in value else _q(value)


@functools.lru_cache(maxsize=64)
def _origin(route: Route) -> str:
    return str(route.base.origin())
