"""A real Caddy (Debian's package) on loopback with our own Caddyfile, as in tests.support.nginx.

    with run_caddy(tmp_path, site_body) as caddy:   # caddy.port, caddy.log()
        ...

Imports nothing from `oidcproxy`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.nginx import _await_port, free_port

__all__ = ["Caddy", "caddy_binary", "run_caddy"]


def caddy_binary() -> str:
    path = shutil.which("caddy")
    if path is None:
        raise RuntimeError("caddy is not installed; scripts/setup.sh installs it (apt-get install caddy)")
    return path


@dataclass
class Caddy:
    port: int
    prefix: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        path = self.prefix / "caddy.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def run_caddy(prefix: Path, site: str) -> Iterator[Caddy]:
    """Start caddy in the foreground serving `site` (the body of one plain-HTTP site block)."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "Caddyfile"
    conf.write_text(
        f"{{\n    admin off\n    auto_https off\n"
        f"    log {{\n        output file {prefix}/caddy.log\n    }}\n}}\n"
        f"http://127.0.0.1:{port} {{\n    bind 127.0.0.1\n{site}\n}}\n"
    )
    env = {**os.environ, "HOME": str(prefix), "XDG_DATA_HOME": str(prefix), "XDG_CONFIG_HOME": str(prefix)}
    command = [caddy_binary(), "run", "--config", str(conf), "--adapter", "caddyfile"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _await_port(process, port)
        yield Caddy(port, prefix, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
