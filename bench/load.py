"""Load and logins: wrk runs parsed into figures, a WebSocket echo driver, idle WebSockets, and scripted
sign-ins through each proxy (/oauth2/start at oidcproxy and oauth2-proxy, mod_auth_openidc's redirect)
to get session cookies.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support.nodeidp import provider_login

__all__ = [
    "WRK_MAX_HEADERS",
    "WrkResult",
    "idle_websockets",
    "login",
    "logins_per_s",
    "websocket_echo",
    "wrk",
]


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    mib_s: float
    p50_ms: float
    p99_ms: float
    errors: int


# wrk checks each request with its HTTP parser, which stops at 80 KiB of headers.
WRK_MAX_HEADERS = 80 * 1024 - 1024

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_BYTES = {"B": 1 / 1024**2, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(
    url: str, *, seconds: float, connections: int, threads: int, headers: dict[str, str], pin: str = ""
) -> WrkResult:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if pin:
        argv = ["taskset", "-c", pin, *argv]
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        # Headers go through a Lua script reading files: a 4,000-group Apache cookie (216 KB) is
        # longer than one command-line argument may be.
        lines = []
        for i, (name, value) in enumerate(headers.items()):
            (Path(tmp) / str(i)).write_text(value)
            lines.append(f'wrk.headers["{name}"] = io.open("{tmp}/{i}"):read("*a")')
        (Path(tmp) / "headers.lua").write_text("\n".join(lines) + "\n")
        out = subprocess.run(
            [*argv, "-s", f"{tmp}/headers.lua", url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    mib = float(transfer.group(1)) * _BYTES.get(transfer.group(2), 0) if transfer else 0.0
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(
        requests, rps, mib, _ms(p50.group(1)) if p50 else 0.0, _ms(p99.group(1)) if p99 else 0.0, errors
    )


def _jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)


class _ProxyCookies:
    """The proxy's cookies kept by hand: aiohttp's jar stops at an 8190-byte Cookie header, which a
    large session exceeds (browsers send far more), so the proxy side never goes through a jar."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def take(self, response: aiohttp.ClientResponse) -> None:
        # Read from the raw headers: response.cookies (http.cookies) silently drops some of the 50-odd
        # chunks mod_auth_openidc sets for a 4,000-group session.
        for header in response.headers.getall("Set-Cookie", []):
            pair, _, attributes = header.partition(";")
            name, _, value = pair.strip().partition("=")
            attrs = attributes.lower().replace(" ", "")
            if not value or "max-age=0" in attrs or "max-age=-" in attrs or "expires=thu,01jan1970" in attrs:
                self.values.pop(name, None)
            else:
                self.values[name] = value.strip('"')

    def header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.values.items())} if self.values else {}


async def login(base: str, kind: str, user: str) -> str:
    """Sign in through the proxy at `base` as a browser would; return its Cookie header."""
    async with aiohttp.ClientSession(cookie_jar=_jar()) as idp_side:
        cookies = await _login(idp_side, base, kind, user)
        return cookies.header()["Cookie"]


async def _login(idp_side: aiohttp.ClientSession, base: str, kind: str, user: str) -> _ProxyCookies:
    cookies = _ProxyCookies()
    proxy_side = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    async with proxy_side:
        first = f"{base}/small" if kind == "apache" else f"{base}/oauth2/start?rd=/small"
        async with proxy_side.get(first, allow_redirects=False) as start:
            if start.status != 302:
                raise RuntimeError(f"{first} -> {start.status}: {(await start.text())[:300]}")
            cookies.take(start)
            authorize = start.headers["Location"]
        back = await provider_login(idp_side, authorize, login=user)
        async with proxy_side.get(back, headers=cookies.header(), allow_redirects=False) as done:
            if done.status not in (302, 303):
                raise RuntimeError(f"callback -> {done.status}: {(await done.text())[:300]}")
            cookies.take(done)
        async with proxy_side.get(f"{base}/small", headers=cookies.header(), allow_redirects=False) as check:
            if check.status != 200:
                body = " ".join((await check.text(errors="replace")).split())[:160]
                raise RuntimeError(f"after login {base}/small -> {check.status}: {body}")
    return cookies


async def still_signed_in(base: str, cookie: str) -> bool:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        async with client.get(f"{base}/small", headers={"Cookie": cookie}, allow_redirects=False) as r:
            return r.status == 200


async def logins_per_s(base: str, kind: str, user: str, *, seconds: float, concurrency: int = 4) -> float:
    """Full sign-ins (start -> provider -> callback) per second, each with a fresh browser."""
    done = 0
    deadline = time.monotonic() + seconds

    async def one_browser() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with aiohttp.ClientSession(cookie_jar=_jar()) as browser:
                await _login(browser, base, kind, user)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(one_browser() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def websocket_echo(url: str, cookie: str, *, seconds: float, connections: int = 20) -> float:
    """Echoed messages per second over `connections` WebSockets, each one message in flight."""
    count = 0
    deadline = time.monotonic() + seconds
    headers = {"Cookie": cookie} if cookie else {}
    async with aiohttp.ClientSession() as client:

        async def one() -> None:
            nonlocal count
            async with client.ws_connect(url, headers=headers) as ws:
                while time.monotonic() < deadline:
                    await ws.send_str("ping " * 8)
                    await ws.receive_str()
                    count += 1

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(connections)))
        return count / (time.monotonic() - started)


async def idle_websockets(url: str, cookie: str, count: int, measure: object) -> tuple[int, float]:
    """Open `count` WebSockets and hold them; return (how many opened, measure() while held)."""
    headers = {"Cookie": cookie} if cookie else {}
    connector = aiohttp.TCPConnector(limit=0)
    opened: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession(connector=connector) as client:
        try:
            for at in range(0, count, 200):
                batch = [
                    asyncio.wait_for(client.ws_connect(url, headers=headers, autoping=False), 20)
                    for _ in range(min(200, count - at))
                ]
                results = await asyncio.gather(*batch, return_exceptions=True)
                opened += [r for r in results if isinstance(r, aiohttp.ClientWebSocketResponse)]
                if len(opened) < at:  # the proxy stopped accepting more: measure what is held
                    break
            await asyncio.sleep(1.0)  # let the proxy settle its buffers before measuring
            value = measure()  # type: ignore[operator]
            return len(opened), float(value)
        finally:
            await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
