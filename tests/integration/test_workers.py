"""`oidcproxy --workers 2` as an operator runs it: two processes on one port, a crashed worker replaced,
and SIGTERM draining the request in flight before the parent exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from oidcproxy.config import cookie_key_material
from oidcproxy.model import Identity, Session, Tokens, system_clock
from oidcproxy.sessions.cookies import CookiePolicy
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.store import CookieSessionStore
from tests.factories import COOKIE_SECRET

_BOUND_S = 30.0


def children(pid: int) -> set[int]:
    """The live child processes of `pid`, read from /proc (Linux)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(pid) and not fields.get("State", "").startswith("Z"):
            found.add(int(entry.name))
    return found


def workers_of(pid: int) -> set[int]:
    """The supervisor's worker processes: its children except the one holding the shared state."""
    return {c for c in children(pid) if _comm(c) != "oidcproxy-state"}


def _comm(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


async def until(condition: Any, what: str) -> None:
    """Poll a condition that a process changes on its own, bounded (not a readiness sleep)."""
    async with asyncio.timeout(_BOUND_S):
        while not condition():  # noqa: ASYNC110 - another process changes it; nothing to await
            await asyncio.sleep(0.05)


class SlowUpstream:
    """An upstream whose /slow answers only when the test lets it, to hold a request in flight."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        async def slow(request: web.Request) -> web.StreamResponse:
            self.arrived.set()
            await self.release.wait()
            return web.Response(text="finished")

        async def fast(request: web.Request) -> web.StreamResponse:
            return web.Response(text=f"hello {request.headers.get('X-Forwarded-Email', '')}")

        app = web.Application()
        app.router.add_get("/slow", slow)
        app.router.add_get("/{tail:.*}", fast)
        return app


@pytest.fixture
async def slow_upstream(aiohttp_server: Any) -> AsyncIterator[tuple[SlowUpstream, TestServer]]:
    slow = SlowUpstream()
    server: TestServer = await aiohttp_server(slow.app())
    yield slow, server
    slow.release.set()


@pytest.fixture
def session_cookie() -> dict[str, str]:
    """A session sealed with the proxy's secret, as its own callback would have set it."""
    store = CookieSessionStore(KeyRing([cookie_key_material(COOKIE_SECRET)]), CookiePolicy(), system_clock)
    now = system_clock()
    identity = Identity("sub-w", "wanda@example.com", True, "wanda@example.com", "wanda", ("ops",))
    session = Session(identity, Tokens("id", "at", "", now + 600), now, now + 600)
    return {c.name: c.value for c in asyncio.run(store.save(session, {}))}


@pytest.fixture
def workers_proxy(
    slow_upstream: tuple[SlowUpstream, TestServer], unused_tcp_port: int
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    _, upstream = slow_upstream
    address = f"127.0.0.1:{unused_tcp_port}"
    command = [
        sys.executable, "-m", "oidcproxy", "--workers", "2", "--http-address", address,
        "--upstream", str(upstream.make_url("/")), "--oidc-issuer-url", "http://127.0.0.1:9",
        "--client-id", "c", "--client-secret", "s", "--cookie-secret", COOKIE_SECRET,
        "--cookie-secure=false", "--email-domain", "example.com", "--request-logging=false",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == f"oidcproxy listening on {address} (2 workers)", line
        yield process, f"http://{address}"
    finally:
        process.terminate()
        try:
            process.communicate(timeout=_BOUND_S)
        except subprocess.TimeoutExpired:
            process.kill()  # its workers follow it (PR_SET_PDEATHSIG)
            process.communicate(timeout=_BOUND_S)


async def test_two_workers_serve_and_a_killed_one_is_replaced(
    workers_proxy: tuple[subprocess.Popen[str], str], session_cookie: dict[str, str]
) -> None:
    process, base = workers_proxy
    await until(lambda: len(workers_of(process.pid)) == 2, "two workers")
    assert len(children(process.pid)) == 3  # and the process keeping the state they share
    first = workers_of(process.pid)
    async with aiohttp.ClientSession(cookies=session_cookie) as client:
        for _ in range(10):
            async with client.get(f"{base}/x", headers={"Connection": "close"}) as response:
                assert await response.text() == "hello wanda@example.com"
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        await until(lambda: len(workers_of(process.pid) - {victim}) == 2, "a replacement worker")
        assert victim not in children(process.pid)
        for _ in range(10):
            async with client.get(f"{base}/x", headers={"Connection": "close"}) as response:
                assert response.status == 200
    assert process.poll() is None


async def test_sigterm_drains_the_request_in_flight_then_exits_cleanly(
    workers_proxy: tuple[subprocess.Popen[str], str],
    slow_upstream: tuple[SlowUpstream, TestServer],
    session_cookie: dict[str, str],
) -> None:
    process, base = workers_proxy
    slow, _ = slow_upstream
    async with aiohttp.ClientSession(cookies=session_cookie) as client:
        in_flight = asyncio.create_task(client.get(f"{base}/slow"))
        async with asyncio.timeout(_BOUND_S):
            await slow.arrived.wait()
        process.send_signal(signal.SIGTERM)
        await until(lambda: _refuses(base), "the workers to stop accepting")
        assert process.poll() is None  # still draining
        slow.release.set()
        async with asyncio.timeout(_BOUND_S):
            response = await in_flight
        assert response.status == 200
        assert await response.text() == "finished"
        response.release()
    code = await asyncio.to_thread(process.wait, _BOUND_S)
    assert code == 0


def _refuses(base: str) -> bool:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


def test_embedded_provider_refuses_more_than_one_worker() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oidcproxy", "--dev", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers: the embedded provider keeps its state in one process" in done.stderr
