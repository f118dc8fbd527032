"""Prometheus metrics (--metrics-address) as an operator scrapes them.

Two real worker processes serve requests and the scrape adds up what both counted; the listener is
its own port, never behind sign-in; the exposition passes `promtool check metrics`; a login, a
forbidden person, a forged callback, a WebSocket and refreshes (against the real npm oidc-provider)
each show in their counters.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from oidcproxy.about import version_info
from oidcproxy.web.appkeys import METRICS, OIDC
from tests.factories import COOKIE_SECRET, walk_login
from tests.integration.test_refresh import refreshing_proxy
from tests.integration.test_workers import (
    _BOUND_S,
    SlowUpstream,
    session_cookie,
    slow_upstream,
    until,
    workers_of,
)
from tests.support.oidcflow import sign_in

__all__ = ["session_cookie", "slow_upstream"]  # fixtures shared with test_workers.py

JSON = {"Accept": "application/json"}


def promtool(text: bytes) -> subprocess.CompletedProcess[str]:
    promtool_path = shutil.which("promtool")
    assert promtool_path, "promtool is installed by scripts/setup.sh (Debian package prometheus)"
    return subprocess.run(
        [promtool_path, "check", "metrics"], input=text.decode(), capture_output=True, text=True, timeout=60
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics_proxy(
    slow_upstream: tuple[SlowUpstream, TestServer], unused_tcp_port: int, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """`oidcproxy --workers 2 --metrics-address 127.0.0.1:0`, its files under TMPDIR=tmp_path."""
    _, upstream = slow_upstream
    address = f"127.0.0.1:{unused_tcp_port}"
    command = [
        sys.executable, "-m", "oidcproxy", "--workers", "2", "--http-address", address,
        "--metrics-address", "127.0.0.1:0",
        "--upstream", str(upstream.make_url("/")), "--oidc-issuer-url", "http://127.0.0.1:9",
        "--client-id", "c", "--client-secret", "s", "--cookie-secret", COOKIE_SECRET,
        "--cookie-secure=false", "--email-domain", "example.com", "--request-logging=false",
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"oidcproxy listening on {address} (2 workers)"
        line = process.stdout.readline().strip()
        assert line.startswith("oidcproxy metrics on http://127.0.0.1:"), line
        yield process, f"http://{address}", line.rsplit(" ", 1)[1]
    finally:
        process.terminate()
        try:
            process.communicate(timeout=_BOUND_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=_BOUND_S)
    assert not list(tmp_path.glob("oidcproxy-metrics-*")), "the files are removed at exit"


def total_requests(metrics_url: str) -> float:
    """oidcproxy_requests_total summed over its labels, scraped now (blocking: polled by `until`)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        found = samples(response.read().decode())
    return sum(v for (name, _), v in found.items() if name == "oidcproxy_requests_total")


def per_worker_requests(tmp_path: Path) -> list[float]:
    """Requests each worker counted, read from its own file alone."""
    (folder,) = tmp_path.glob("oidcproxy-metrics-*")
    counts = []
    for db in sorted(folder.glob("counter_*.db")):
        alone = tmp_path / f"alone-{db.stem}"
        alone.mkdir()
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        found = samples(generate_latest(registry).decode())
        counts.append(sum(v for (name, _), v in found.items() if name == "oidcproxy_requests_total"))
    return counts


async def test_two_workers_counts_add_up_on_the_metrics_port_only(
    metrics_proxy: tuple[subprocess.Popen[str], str, str],
    session_cookie: dict[str, str],
    tmp_path: Path,
) -> None:
    process, base, metrics_url = metrics_proxy
    await until(lambda: len(workers_of(process.pid)) == 2, "two workers")
    async with aiohttp.ClientSession(cookies=session_cookie) as signed_in, aiohttp.ClientSession() as anon:
        for _ in range(30):  # new connections: SO_REUSEPORT spreads them over both workers
            async with signed_in.get(f"{base}/x", headers={"Connection": "close"}) as response:
                assert response.status == 200
        for _ in range(6):
            async with anon.get(f"{base}/x", headers={"Connection": "close", **JSON}) as response:
                assert response.status == 401
        async with anon.get(f"{base}/metrics", headers=JSON) as gated:
            assert gated.status == 401, "/metrics on the proxy's port is a protected path like any other"
        # A worker counts a request just after its last byte went out: the scrape may be a moment early.
        await until(lambda: total_requests(metrics_url) == 37, "37 requests counted")
        async with anon.get(metrics_url) as scraped:
            assert scraped.status == 200
            assert scraped.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = await scraped.read()
        assert [c > 0 for c in per_worker_requests(tmp_path)] == [True, True], "both workers served"
        found = samples(body.decode())
        assert value(found, "oidcproxy_requests_total", route="proxied", status="200") == 30
        assert value(found, "oidcproxy_requests_total", route="proxied", status="401") == 7  # /metrics too
        assert value(found, "oidcproxy_auth_decisions_total", outcome="cookie", provider="default") == 30
        assert value(found, "oidcproxy_auth_decisions_total", outcome="unauthenticated", provider="") == 7
        assert value(found, "oidcproxy_upstream_response_seconds_count") == 30
        assert value(found, "oidcproxy_request_duration_seconds_count", route="proxied") == 37
        version = version_info()
        build = {"version": version.oidcproxy, "python": version.python, "aiohttp": version.aiohttp}
        assert value(found, "oidcproxy_build_info", **build) == 1
        checked = promtool(body)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        # A worker killed: what it counted stays in the sum, and its replacement adds to it.
        victim = min(workers_of(process.pid))
        os.kill(victim, signal.SIGKILL)
        await until(lambda: len(workers_of(process.pid) - {victim}) == 2, "a replacement worker")
        async with signed_in.get(f"{base}/x", headers={"Connection": "close"}) as response:
            assert response.status == 200
        await until(lambda: total_requests(metrics_url) == 38, "the new worker's request added")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "oidcproxy", "--http-address", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9/",
        "--oidc-issuer-url", "http://127.0.0.1:9", "--client-id", "c", "--client-secret", "s",
        "--cookie-secret", COOKIE_SECRET, "--email-domain", "example.com", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)


def test_a_busy_metrics_port_or_no_writable_tmpdir_stops_start_up(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = _run("--metrics-address", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stderr.startswith(f"oidcproxy: --metrics-address: cannot listen on 127.0.0.1:{port}")
    assert len(done.stderr.strip().splitlines()) == 1

    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o500)
    env = {**os.environ, "TMPDIR": str(read_only / "missing")}
    done = _run("--workers", "2", "--metrics-address", "127.0.0.1:0", env=env)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert line.startswith("oidcproxy: --metrics-address: 2 workers keep their counts in files"), line
    assert "TMPDIR" in line and len(line.splitlines()) == 1


async def test_login_forbidden_forged_callback_and_websocket_are_counted(
    proxy_factory: Any, browser: Any, provider: Any
) -> None:
    proxy = await proxy_factory(metrics_address="127.0.0.1:0")
    metrics = proxy.app[METRICS]
    assert metrics.registry is not None

    def seen(name: str, **labels: str) -> float:
        assert metrics.registry is not None
        return metrics.registry.get_sample_value(name, labels) or 0.0

    final = await walk_login(browser, proxy.make_url("/"), "/app", provider.login, login="alice")
    assert final.status == 200
    assert seen("oidcproxy_logins_started_total", provider="default") == 1
    assert seen("oidcproxy_logins_completed_total", provider="default") == 1
    assert seen("oidcproxy_requests_total", route="callback", status="302") == 1
    assert seen("oidcproxy_requests_total", route="login", status="302") == 1
    assert seen("oidcproxy_session_cookie_bytes_count") == 1
    assert seen("oidcproxy_session_cookie_bytes_sum") > 100
    assert seen("oidcproxy_provider_requests_total", endpoint="token", outcome="ok", provider="default") == 1
    assert (
        seen("oidcproxy_provider_request_duration_seconds_count", endpoint="token", provider="default") == 1
    )
    assert seen("oidcproxy_auth_decisions_total", outcome="cookie", provider="default") == 1

    async with browser.ws_connect(proxy.make_url("/ws")) as ws:
        await ws.receive_str()
        assert seen("oidcproxy_websockets_open") == 1
        await ws.send_str("close")
        await ws.receive()
    await until(lambda: seen("oidcproxy_websockets_open") == 0, "the relay to end")
    await until(lambda: seen("oidcproxy_requests_total", route="proxied", status="101") == 1, "the 101")

    assert (await browser.get(proxy.make_url("/oauth2/auth"))).status == 202
    assert seen("oidcproxy_requests_total", route="auth_request", status="202") == 1
    forged = await browser.get(proxy.make_url("/oauth2/callback?state=x&code=y"), headers=JSON)
    assert forged.status == 400
    assert seen("oidcproxy_login_failures_total", reason="state", provider="default") == 1
    out = await browser.get(proxy.make_url("/oauth2/sign_out"), allow_redirects=False)
    assert out.status in (200, 302)  # our page, or on to the provider's end_session_endpoint
    assert seen("oidcproxy_session_store_operations_total", operation="clear", outcome="ok") >= 1

    browser.cookie_jar.clear()
    refused = await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="mallory")
    assert refused.status == 403
    assert seen("oidcproxy_login_failures_total", reason="forbidden", provider="default") == 1
    assert seen("oidcproxy_logins_completed_total", provider="default") == 1

    checked = promtool(generate_latest(metrics.registry))
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_refresh_outcomes_and_key_set_fetches(
    node: Any, make_proxy: Any, browser: Any, aiohttp_server: Any
) -> None:
    idp, _, clock, proxy = await refreshing_proxy(
        node, make_proxy, aiohttp_server, metrics_address="127.0.0.1:0"
    )
    metrics = proxy.app[METRICS]

    def seen(name: str, **labels: str) -> float:
        assert metrics.registry is not None
        return metrics.registry.get_sample_value(name, labels) or 0.0

    assert (await sign_in(browser, proxy, "alice")).status == 200
    clock.advance(6)
    assert (await browser.get(proxy.make_url("/a"))).status == 200
    assert seen("oidcproxy_refreshes_total", outcome="ok", provider="default") == 1
    idp.stop()  # the tap answers 502: transient, the session stays
    clock.advance(6)
    assert (await browser.get(proxy.make_url("/b"))).status == 200
    assert seen("oidcproxy_refreshes_total", outcome="transient", provider="default") == 1
    assert (
        seen("oidcproxy_provider_requests_total", endpoint="token", outcome="error", provider="default") == 1
    )
    idp.restart()  # forgot its refresh tokens: invalid_grant ends the session
    clock.advance(31)
    assert (await browser.get(proxy.make_url("/c"), headers=JSON)).status == 401
    assert seen("oidcproxy_refreshes_total", outcome="fatal", provider="default") == 1
    assert (
        seen("oidcproxy_provider_requests_total", endpoint="token", outcome="refused", provider="default")
        == 1
    )
    keys = proxy.app[OIDC].keys
    assert keys is not None and keys.fetches >= 1
    assert (
        seen("oidcproxy_provider_requests_total", endpoint="jwks", outcome="ok", provider="default")
        == keys.fetches
    )
    assert seen("oidcproxy_jwks_fetches_total", outcome="ok", provider="default") == 0, (
        "mirrored at sync, not before"
    )
    metrics.sync()  # what a scrape does first (and every few seconds, with several workers)
    assert seen("oidcproxy_jwks_fetches_total", outcome="ok", provider="default") == keys.fetches
