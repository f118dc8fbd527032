"""Log lines: one timestamp style, text or JSON (--log-format), and the request id on every record.

    configure_logging(level, fmt)  the root handler on stderr with the chosen formatter
    REQUEST_ID                     the id of the request being handled (a ContextVar the middleware sets);
                                   a record factory copies it onto every record made while it is set,
                                   in the event loop's thread, before the record goes to the writer thread
    stamp(t)                       RFC 3339 UTC with milliseconds: the one timestamp of every line
    TextFormatter, JsonFormatter   `<time> <LEVEL> <logger>: <msg> k=v ...` / one JSON object a line

A record's `fields` (a dict: `event`, `reason`, `user`, ...) become keys of the JSON object, or `k=v`
pairs after the text message. Imports nothing from oidcproxy.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time as _time
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "logfmt",
    "stamp",
]

LogFormat = Literal["text", "json"]
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_quote = json.encoder.encode_basestring_ascii  # C-accelerated: a JSON string literal


class _Stamp:
    """The second's prefix is formatted once a second; the milliseconds are appended per line."""

    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self, t: float) -> str:
        second = int(t)
        if second != self.second:
            self.second, self.prefix = second, _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(second))
        return f"{self.prefix}.{int((t - second) * 1000):03d}Z"


stamp = _Stamp()
"""stamp(t) -> '2025-01-02T03:04:05.678Z' (RFC 3339, UTC): the time of every line, text or JSON."""


def now() -> float:
    """Wall-clock time for a log line (not an expiry decision: those use the injected Clock)."""
    return _time.time()  # noqa: TID251 - a log timestamp


def logfmt(fields: Mapping[str, Any]) -> str:
    """`k=v k2="v with spaces"`: values quoted when they hold a space, a quote or nothing at all."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\\') or not text.isprintable():
            text = _quote(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


class TextFormatter(logging.Formatter):
    """`2025-01-02T03:04:05.678Z INFO oidcproxy: message k=v` (a traceback follows on its own lines)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{stamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + logfmt(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, msg, request_id, then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["error"] = record.exc_text  # the traceback, escaped: still one line
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"), default=str)


def configure_logging(level: str, fmt: LogFormat) -> None:
    """The root logger writes `fmt` lines to stderr at `level`; every record carries the request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    _stamp_request_ids()


def _stamp_request_ids() -> None:
    factory = logging.getLogRecordFactory()
    if getattr(factory, "stamps_request_id", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        return record

    make.stamps_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)
