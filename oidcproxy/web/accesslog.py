"""The access log: one line per request, batched, written off the event loop.

aiohttp's default access logger formats each line through its format atoms and makes a LogRecord per
request; behind a queue handler that record is copied and formatted again in a thread that competes
for the GIL. Here a line is one f-string appended to a buffer, and the buffer is written a few times a
second by the default executor: on the hot path that is the whole cost of logging. Query values that
carry secrets (the callback's `code` and `state`, tokens) are never written.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time as _time
from collections.abc import Callable
from typing import IO, ClassVar
from urllib.parse import parse_qsl, urlencode

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

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
        self.stamp_second = -1
        self.stamp = ""

    def now(self) -> str:
        # Wall-clock stamp for people reading the log; recomputed once a second.
        second = int(_time.time())  # noqa: TID251 - a log timestamp, not an expiry decision
        if second != self.stamp_second:
            self.stamp_second = second
            self.stamp = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(second))
        return self.stamp

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
) -> tuple[type[AbstractAccessLogger], Callable[[], None]]:
    """An `access_log_class` writing to `stream` (stderr), and the call that writes what is still
    buffered (at shutdown, after the event loop has stopped). aiohttp makes one logger per connection;
    they all share the one buffer made here, owned by the caller (serve), not by this module."""
    sink = _Sink(stream if stream is not None else sys.stderr)

    class Logger(BatchedAccessLogger):
        _shared = sink

    def flush() -> None:
        text, sink.lines = "".join(sink.lines), []
        if text:
            sink.write(text)

    return Logger, flush


class BatchedAccessLogger(AbstractAccessLogger):
    """`access_log_class` for aiohttp: `<time> <peer> "<method> <path> HTTP/x.y" <status> <bytes> <ms>`."""

    _shared: ClassVar[_Sink]  # set by batched_access_log

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._sink = self._shared

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        query = redact_query(request.query_string)
        target = f"{request.path}?{query}" if query else request.path
        version = request.version
        self._sink.add(
            f'{self._sink.now()} {request.remote} "{request.method} {target} HTTP/{version.major}.'
            f'{version.minor}" {response.status} {response.body_length} {time * 1000:.1f}ms\n'
        )
