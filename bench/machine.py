"""The machine a run took its figures on, and the version of every program in it, for the results
file: CPU model, cores, memory, kernel, load, and each peer's version. Reads /proc and asks each
binary for its version; a missing one reads "absent". Never fails a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["describe"]

_REPO = Path(__file__).resolve().parents[1]


def describe(oauth2_proxy: Path | None) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_mib": _meminfo_mib("MemTotal"),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
        "versions": _versions(oauth2_proxy),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _meminfo_mib(key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return None


def _run(argv: list[str], pattern: str = r"\S+") -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(0) if found else (done.stdout + done.stderr).strip()[:80] or "unknown"


def _package(name: str) -> str:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(name)
    return "absent"


def _npm(name: str) -> str:
    path = _REPO / "tests/oidc-provider/node_modules" / name / "package.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        return str(json.loads(path.read_text())["version"])
    return "absent"


def _versions(oauth2_proxy: Path | None) -> dict[str, str]:
    return {
        "oidcproxy": _run(["git", "-C", str(_REPO), "describe", "--always", "--dirty"]),
        "python": platform.python_version(),
        "aiohttp": _package("aiohttp"),
        "uvloop": _package("uvloop"),
        "nginx": _run(["nginx", "-v"], r"nginx/[\d.]+"),
        "apache2": _run(["apache2", "-v"], r"Apache/[\d.]+"),
        "mod_auth_openidc": _run(
            ["dpkg-query", "-W", "-f", "${Version}", "libapache2-mod-auth-openidc"], r"[\w.:~+-]+"
        ),
        "oauth2-proxy": _run([str(oauth2_proxy), "--version"], r"v[\d.]+") if oauth2_proxy else "absent",
        "redis": _run(["redis-server", "--version"], r"v=[\d.]+"),
        "node": _run(["node", "--version"]),
        "oidc-provider": _npm("oidc-provider"),
        "wrk": _run(["wrk", "-v"], r"wrk [\d.]+"),
    }
