"""Cookie value chunking and Set-Cookie specs. Pure: no I/O, no aiohttp.web.

Browsers keep about 4096 bytes a cookie, name and attributes included, so a large sealed session is
split into `<name>_0`, `<name>_1`, … and joined again on the way in. Past what a browser sends back in
one Cookie header line that NGINX (`large_client_header_buffers 4 64k`) and we accept, or past the
chunks we read back, a warning names the cause and the fix. No I/O besides that log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CHUNK_SIZE",
    "COOKIE_BUDGET",
    "oversize_warning",
    "CookiePolicy",
    "SetCookie",
    "chunk_names",
    "join_cookie",
    "secure_attribute",
    "split_cookie",
]

CHUNK_SIZE = 3800
_MAX_CHUNKS = 32
# One Cookie header line must fit 64 KiB (NGINX's documented buffer, our --max-header-size default),
# next to the other cookies of the site: keep the session well under it.
COOKIE_BUDGET = 48 * 1024

log = logging.getLogger("oidcproxy.cookies")


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """The attributes every cookie of ours carries."""

    name: str = "_oidcproxy"
    domain: str = ""
    path: str = "/"
    secure: bool = True
    samesite: str = "lax"
    max_age: int = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SetCookie:
    """One Set-Cookie header to apply; max_age 0 deletes the cookie."""

    name: str
    value: str
    max_age: int
    path: str = "/"
    domain: str = ""
    secure: bool = True
    samesite: str = "lax"
    httponly: bool = True

    def __repr__(self) -> str:
        return f"SetCookie({self.name!r}, <{len(self.value)} chars>, max_age={self.max_age})"

    @classmethod
    def make(cls, policy: CookiePolicy, name: str, value: str, max_age: int | None = None) -> SetCookie:
        return cls(
            name=name,
            value=value,
            max_age=policy.max_age if max_age is None else max_age,
            path=policy.path,
            domain=policy.domain,
            secure=policy.secure,
            samesite=policy.samesite,
        )


def secure_attribute(cookie: SetCookie, external_scheme: str) -> bool:
    """Whether the cookie goes out marked `Secure`.

    --cookie-secure=true (the default): always, as oauth2-proxy. --cookie-secure=false only stops
    *requiring* https: when the browser's own scheme is https (TLS here, or `X-Forwarded-Proto: https`
    from a trusted --reverse-proxy peer) the cookie is still Secure, since it only ever travels over
    https there and could otherwise leak to a plain-http page of the same host.
    """
    return cookie.secure or external_scheme == "https"


def oversize_warning(name: str, size: int, limit: int = CHUNK_SIZE) -> str | None:
    """Why a session of `size` bytes will not come back from the browser, and what to do; or None."""
    chunks = -(-size // limit)
    if size <= COOKIE_BUDGET and chunks <= _MAX_CHUNKS:
        return None
    return (
        f"session cookie {name} is {size} bytes in {chunks} cookies: browsers, NGINX "
        f"(large_client_header_buffers 4 64k) and --max-header-size will not carry it back in one "
        "Cookie header, so the person will be asked to sign in again. The cause is the size of the "
        "provider's tokens (usually a long groups claim in the ID token); fix: configure Redis "
        "(--redis-connection-url) so that sessions over --cookie-max-chunks cookies move there, or "
        "--session-store-type=redis; or have the provider send fewer groups (a groups filter)"
    )


def split_cookie(name: str, value: str, limit: int = CHUNK_SIZE) -> list[tuple[str, str]]:
    warning = oversize_warning(name, len(value), limit)
    if warning:
        log.warning(warning)
    if len(value) <= limit:
        return [(name, value)]
    return [(f"{name}_{i}", value[at : at + limit]) for i, at in enumerate(range(0, len(value), limit))]


def join_cookie(name: str, cookies: Mapping[str, str]) -> str | None:
    """The whole value from `name`, or from its chunks in order; None when absent or a chunk is missing."""
    whole = cookies.get(name)
    if whole is not None:
        return whole
    parts: list[str] = []
    for i in range(_MAX_CHUNKS):
        part = cookies.get(f"{name}_{i}")
        if part is None:
            break
        parts.append(part)
    return "".join(parts) if parts else None


def chunk_names(name: str, cookies: Mapping[str, str]) -> list[str]:
    """Every cookie of `name` present: the whole one and any chunks."""
    found = [name] if name in cookies else []
    prefix = f"{name}_"
    return found + [k for k in cookies if k.startswith(prefix) and k[len(prefix) :].isdigit()]
