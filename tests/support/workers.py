"""`oidcproxy --workers N` run as an operator runs it, and requests that any of its workers may take.

Shared by test_workers_shared_state.py, test_keycloak.py and test_hydra.py:

    with start_workers(["--upstream", ..., "--oidc-issuer-url", ...], workers=2) as base:
        replies = await burst(base, cookies, "tag")      # PARALLEL requests, each on its own connection
        assert not any(deletes_session(r) for r in replies)

Each request opens its own connection, so that SO_REUSEPORT spreads them over the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie

import aiohttp
from aiohttp.abc import AbstractCookieJar
from yarl import URL

from tests.factories import COOKIE_SECRET
from tests.support.process import stop

__all__ = [
    "PARALLEL",
    "Reply",
    "burst",
    "cookies_set",
    "deletes_session",
    "fresh_connection_get",
    "refreshed",
    "session_cookies",
    "start_workers",
]

PARALLEL = 16


@contextlib.contextmanager
def start_workers(args: list[str], *, address: str, workers: int = 2) -> Iterator[URL]:
    """The proxy in its own processes with `args` (upstream, provider...) on `address`; stopped after."""
    command = [
        sys.executable, "-m", "oidcproxy", "--workers", str(workers), "--http-address", address,
        "--cookie-secret", COOKIE_SECRET, "--cookie-secure=false", "--request-logging=false", *args,
    ]  # fmt: skip
    # Only `args` configure it: the proxy refuses unknown OIDCPROXY_* variables (OIDCPROXY_TEST_KEYCLOAK).
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDCPROXY_")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != f"oidcproxy listening on {address} ({workers} workers)":
        raise AssertionError(f"oidcproxy did not start: {line!r}\n{stop(process)}")
    try:
        yield URL(f"http://{address}")
    finally:
        stop(process)


@dataclass(frozen=True)
class Reply:
    status: int
    set_cookies: list[SimpleCookie]


async def fresh_connection_get(url: URL, cookies: dict[str, str]) -> Reply:
    """One request on its own connection (a new TCP source port, so any worker may take it)."""
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Cookie": header, "Accept": "application/json"}
        async with session.get(url, headers=headers, allow_redirects=False) as resp:
            await resp.read()
            return Reply(resp.status, [SimpleCookie(v) for v in resp.headers.getall("Set-Cookie", ())])


async def burst(base: URL, cookies: dict[str, str], tag: str) -> list[Reply]:
    urls = [base.with_path(f"/{tag}{i}") for i in range(PARALLEL)]
    return await asyncio.gather(*(fresh_connection_get(url, cookies) for url in urls))


def session_cookies(jar: AbstractCookieJar) -> dict[str, str]:
    return {c.key: c.value for c in jar if c.key.startswith("_oidcproxy") and "_csrf_" not in c.key}


def deletes_session(reply: Reply) -> bool:
    """Does this response tell the browser to drop (a chunk of) the session cookie?"""
    for cookie in reply.set_cookies:
        for name, morsel in cookie.items():
            if name.startswith("_oidcproxy") and "_csrf_" not in name:
                if not morsel.value or morsel["max-age"] in ("0", "-1"):
                    return True
    return False


def refreshed(reply: Reply) -> bool:
    """Does this response set the session cookie (a sign-in or a refreshed session)?"""
    names = {n for c in reply.set_cookies for n, m in c.items() if n.startswith("_oidcproxy") and m.value}
    return bool(names)


def cookies_set(reply: Reply) -> dict[str, str]:
    """The session cookie (all its chunks) this response sets, as the browser would send it next."""
    return {
        n: m.value for c in reply.set_cookies for n, m in c.items() if n.startswith("_oidcproxy") and m.value
    }
