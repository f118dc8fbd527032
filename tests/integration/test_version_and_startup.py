"""`oidcproxy --version` / `oidcproxy version`, and the start-up line naming the worker count and its
source, as an operator sees them from real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from oidcproxy import __version__
from oidcproxy.serve import default_workers
from tests.factories import COOKIE_SECRET
from tests.support.process import stop

ROOT = Path(__file__).resolve().parents[2]


def oidcproxy(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OIDCPROXY_")}
    return subprocess.run(
        [sys.executable, "-m", "oidcproxy", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_names_the_versions_and_the_speedups() -> None:
    for args in (["--version"], ["version"]):
        done = oidcproxy(*args)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[:3] == [
            f"oidcproxy {__version__}",
            f"Python {sys.version.split()[0]} (CPython)",
            f"aiohttp {aiohttp.__version__}",
        ]
        speedups = {line.split(":")[0]: line.split(":", 1)[1] for line in lines[3:]}
        assert set(speedups) == {"uvloop", "llhttp (httptools)", "llhttp (aiohttp C parser)"}
        assert speedups["llhttp (httptools)"].startswith(" on (")  # a dependency, always there


def test_version_as_json() -> None:
    info = json.loads(oidcproxy("version", "--json").stdout)
    assert info["oidcproxy"] == __version__ and info["aiohttp"] == aiohttp.__version__
    assert isinstance(info["speedups"]["uvloop"]["on"], bool)


def test_the_default_worker_count_is_announced_with_its_reason(
    unused_tcp_port_factory: Callable[[], int],
) -> None:
    address = f"127.0.0.1:{unused_tcp_port_factory()}"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OIDCPROXY_")}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "oidcproxy", f"--http-address={address}",
            "--upstream=http://127.0.0.1:9/", "--oidc-issuer-url=http://127.0.0.1:9",
            "--client-id=c", "--client-secret=s", f"--cookie-secret={COOKIE_SECRET}",
            "--email-domain=example.com",
        ],
        env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
    finally:
        stop(process)
    count, why = default_workers()
    plural = "s" if count > 1 else ""
    assert line == f"oidcproxy listening on {address} ({count} worker{plural}: {why})"
    assert re.search(r"(cgroup cpu\.max|cgroup cpu\.cfs_quota_us|CPUs in the affinity mask)", why)


def test_module_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oidcproxy", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    assert "--cookie-secret" in done.stdout
