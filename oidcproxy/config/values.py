"""How option values are spelt and parsed: durations, lists, addresses, the cookie secret, flag/env names.

Pure functions and annotated types the concern modules declare their fields with. No I/O; imports
nothing from oidcproxy.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

__all__ = [
    "ENV_PREFIX",
    "HOW_TO_GENERATE",
    "HTTP_URL",
    "Duration",
    "StrList",
    "cookie_key_material",
    "env_name",
    "flag_name",
    "format_duration",
    "is_loopback",
    "is_loopback_url",
    "key_value_problems",
    "kind",
    "option",
    "parse_duration",
    "shown_default",
    "split_address",
]

ENV_PREFIX = "OIDCPROXY_"
HOW_TO_GENERATE = (
    'generate one with: python -c "import secrets,base64;'
    'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
)
HTTP_URL = r"https?://[^\s#]+"
"""An endpoint URL as the provider options take it (query allowed, no fragment)."""
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: object) -> float:
    """Go-style durations as oauth2-proxy takes them (`168h`, `1h30m`, `250ms`); bare numbers: seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f"{text!r} is not a duration; write it like 168h, 1h30m, 30s or 500ms")
    return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _split_list(value: object) -> object:
    """Lists come as repeated flags, TOML arrays, or comma-separated env values."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
StrList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]


def split_address(address: str) -> tuple[str, int]:
    """`host:port`, `[::1]:port`, `:port` or `http://host:port` -> (host, port)."""
    text = address.removeprefix("http://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port; write it like 127.0.0.1:4180 or 0.0.0.0:4180")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - ':4180' means all addresses


def cookie_key_material(secret: str) -> bytes:
    """The cookie secret as bytes: raw 16/24/32 characters, or URL-safe base64 of 16/24/32 bytes."""
    raw = secret.encode()
    for candidate in (secret, secret + "=" * (-len(secret) % 4)):
        try:
            decoded = base64.urlsafe_b64decode(candidate.encode())
        except ValueError:
            continue
        if len(decoded) in (16, 24, 32) and base64.urlsafe_b64encode(decoded).rstrip(b"=") == (
            candidate.encode().rstrip(b"=")
        ):
            return decoded
    if len(raw) in (16, 24, 32):
        return raw
    raise ValueError(f"must be 16, 24 or 32 bytes, raw or URL-safe base64; {HOW_TO_GENERATE}")


def is_loopback(address: str) -> bool:
    """Whether a `host:port` listen address only faces this machine."""
    return _loopback_host(split_address(address)[0])


def is_loopback_url(url: str) -> bool:
    return _loopback_host(urlsplit(url).hostname or "")


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_value_problems(name: str, items: list[str]) -> list[str]:
    """One problem per item of a repeatable `key=value` option that has no `=` or an empty key."""
    out: list[str] = []
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            out.append(f"{flag_name(name)}: {item!r} is not key=value")
    return out


def option(default: Any = None, help: str = "", **kw: Any) -> Any:
    """A settings field: its default and the help text --help and the README table show."""
    if default is None:
        return Field(description=help, **kw)
    return Field(default, description=help, **kw)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def kind(info: FieldInfo) -> str:
    """How a field is given on the command line: "bool" (--x, --x=false), "list" (repeated) or "value"."""
    text = str(info.annotation)
    if "bool" in text:
        return "bool"
    if "list" in text:
        return "list"
    return "value"


def shown_default(name: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "none"
    value = info.default
    if isinstance(value, SecretStr):
        return "none"
    if name.endswith(("_expire", "_timeout", "_refresh", "_refetch")):
        return format_duration(parse_duration(value))
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if value == "" else str(value)
