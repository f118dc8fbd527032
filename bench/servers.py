"""The processes a benchmark run needs, each started into one temp dir and stopped again.

nginx (upstream and plain no-auth proxy), an aiohttp WebSocket echo behind the upstream nginx,
Apache 2 with mod_auth_openidc (client-cookie and server-cache sessions), oauth2-proxy (built from its
Go module by scripts/setup.sh into the git-ignored .cache/peers/bin), a Redis for the setups that keep
sessions on the server, and oidcproxy itself. Configs are generated here at run time; nothing is
written outside the run's temp dir. The peers' tuning is written down here and in README (Performance).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "APACHE_MODULES",
    "OAUTH2_PROXY_VERSION",
    "Proc",
    "Stack",
    "free_port",
    "have",
    "oauth2_proxy_binary",
    "wait_listening",
]

APACHE_MODULES = Path("/usr/lib/apache2/modules")
REPO = Path(__file__).resolve().parents[1]
# The oauth2-proxy release scripts/setup.sh builds (`go install ...@OAUTH2_PROXY_VERSION`).
OAUTH2_PROXY_VERSION = "v7.15.6"
_START_S = 30.0
SMALL_BODY = b"hello from the upstream\n"
BIG_BYTES = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def oauth2_proxy_binary() -> Path | None:
    """$OAUTH2_PROXY, else the one scripts/setup.sh built under .cache/peers/bin, else one on PATH."""
    for candidate in (os.environ.get("OAUTH2_PROXY", ""), str(REPO / ".cache/peers/bin/oauth2-proxy")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("oauth2-proxy")
    return Path(found) if found else None


def have(binary: str) -> bool:
    return shutil.which(binary) is not None or Path(binary).exists()


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + _START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening\n{detail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {_START_S:g}s")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    pid_file: Path | None = None

    def pids(self) -> list[int]:
        """This process and its descendants (workers)."""
        out, todo = [], [self.popen.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                todo += [int(c) for c in children]
                continue
            todo += _children_by_scan(pid)
        return out

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


def _children_by_scan(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("PPid:") and line.split()[1] == str(parent):
                        found.append(int(entry.name))
                        break
    return found


def rss_kib(pid: int, field_name: str = "VmHWM") -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: pages shared by N processes count 1/N to each (smaps_rollup)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


@dataclass
class Stack:
    """Owns the temp dir and every process started in it; stop_all() stops them in reverse order."""

    root: Path
    pin_servers: str = ""  # a CPU list for taskset, or empty
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], port: int, env: dict[str, str] | None = None) -> Proc:
        log = self.root / f"{name}.log"
        if self.pin_servers:
            argv = ["taskset", "-c", self.pin_servers, *argv]
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        proc = Proc(name, popen, port)
        self.procs.append(proc)
        wait_listening(port, popen, name, log)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()

    # -- the upstream: nginx serving a small body, a 1 MB file, and /ws proxied to an echo server
    def upstream(self) -> Proc:
        chmod_for_apache(self.root)  # nginx workers run as nobody too
        www = self.root / "www"
        www.mkdir(exist_ok=True)
        (www / "small").write_bytes(SMALL_BODY)
        (www / "big").write_bytes(os.urandom(BIG_BYTES))
        echo_port = free_port()
        self.spawn("ws-echo", [sys.executable, "-m", "bench.echo", str(echo_port)], echo_port)
        port = free_port()
        body = f"""
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        root {www};
        location = /small {{ default_type text/plain; }}
        location = /big {{ default_type application/octet-stream; }}
        location = /ws {{
            proxy_pass http://127.0.0.1:{echo_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
        }}
    }}"""
        return self._nginx("upstream", port, body)

    # -- the reference: nginx as a plain reverse proxy, no authentication
    def nginx_proxy(self, upstream_port: int) -> Proc:
        port = free_port()
        body = f"""
    upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
        location = /ws {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
        }}
    }}"""
        return self._nginx("nginx-proxy", port, body)

    def _nginx(self, name: str, port: int, servers: str) -> Proc:
        conf = self.root / f"{name}.conf"
        conf.write_text(
            f"""
worker_processes auto;
worker_rlimit_nofile 40000;
pid {self.root}/{name}.pid;
error_log {self.root}/{name}.error.log warn;
daemon off;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    client_body_temp_path {self.root}/{name}-body;
    proxy_temp_path {self.root}/{name}-proxy;
    fastcgi_temp_path {self.root}/{name}-fcgi;
    uwsgi_temp_path {self.root}/{name}-uwsgi;
    scgi_temp_path {self.root}/{name}-scgi;
    large_client_header_buffers 8 64k;
    proxy_buffer_size 64k;
    proxy_buffers 8 64k;
    keepalive_requests 1000000;
    sendfile on;
{servers}
}}
"""
        )
        return self.spawn(name, ["nginx", "-c", str(conf), "-p", str(self.root)], port)

    # -- a peer: Apache + mod_auth_openidc, one vhost per session type, tuned as README says
    def apache(
        self, issuer: str, client_id: str, client_secret: str, upstream_port: int, kinds: Sequence[str]
    ) -> dict[str, int]:
        ports = {kind: free_port() for kind in kinds}
        modules = [
            "mpm_event",
            "authz_core",
            "authz_user",
            "authn_core",
            "auth_openidc",
            "proxy",
            "proxy_http",
        ]
        loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in modules)
        vhosts = "\n".join(
            f"""
Listen 127.0.0.1:{port}
<VirtualHost 127.0.0.1:{port}>
    OIDCProviderMetadataURL {issuer}/.well-known/openid-configuration
    OIDCClientID {client_id}
    OIDCClientSecret {client_secret}
    OIDCRedirectURI http://127.0.0.1:{port}/oauth2/callback
    OIDCCryptoPassphrase bench-passphrase-0123456789abcdef
    OIDCScope "openid email profile"
    OIDCSessionType {kind}
    OIDCSSLValidateServer Off
    OIDCProviderTokenEndpointAuth client_secret_basic
    OIDCSessionInactivityTimeout 86400
    OIDCSessionMaxDuration 86400
    OIDCPassClaimsAs headers
    OIDCStripCookies {_APACHE_SESSION_COOKIES}
    <Location />
        AuthType openid-connect
        Require valid-user
        ProxyPass http://127.0.0.1:{upstream_port}/ keepalive=On
    </Location>
</VirtualHost>"""
            for kind, port in ports.items()
        )
        conf = self.root / "apache.conf"
        conf.write_text(
            f"""
ServerRoot {self.root}
ServerName 127.0.0.1
PidFile {self.root}/apache.pid
DefaultRuntimeDir {self.root}
Mutex file:{self.root}
ErrorLog {self.root}/apache.error.log
LogLevel warn
{loads}
User www-data
Group www-data
{_APACHE_TUNING}
{vhosts}
"""
        )
        chmod_for_apache(self.root)
        first, *others = ports.values()
        self.spawn("apache", ["apache2", "-f", str(conf), "-DFOREGROUND"], first)
        for port in others:
            wait_listening(port, self.procs[-1].popen, "apache vhost")
        return ports

    # -- a peer: oauth2-proxy, one process per session store, flags as README says
    def oauth2_proxy(
        self,
        name: str,
        binary: Path,
        issuer: str,
        client_id: str,
        client_secret: str,
        upstream_port: int,
        *extra: str,
    ) -> Proc:
        port = free_port()
        argv = [
            str(binary), "--http-address", f"127.0.0.1:{port}",
            "--upstream", f"http://127.0.0.1:{upstream_port}/",
            "--provider", "oidc", "--oidc-issuer-url", issuer,
            "--client-id", client_id, "--client-secret", client_secret,
            "--redirect-url", f"http://127.0.0.1:{port}/oauth2/callback",
            "--cookie-secret", "bench-cookie-secret-0123456789ab", "--cookie-secure=false",
            "--email-domain", "*", "--skip-provider-button",
            *_OAUTH2_PROXY_TUNING,
            *extra,
        ]  # fmt: skip
        return self.spawn(name, argv, port)

    # -- the session store of the setups that keep sessions on the server
    def redis(self) -> str:
        """Start Debian's redis-server on a free loopback port, nothing saved; return its URL."""
        port = free_port()
        argv = [
            "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", str(self.root), "--protected-mode", "no",
        ]  # fmt: skip
        self.spawn("redis", argv, port)
        return f"redis://127.0.0.1:{port}"

    # -- us
    def oidcproxy(
        self, name: str, issuer: str, client_id: str, client_secret: str, upstream_port: int, *extra: str
    ) -> Proc:
        port = free_port()
        argv = [
            sys.executable, "-m", "oidcproxy", "--http-address", f"127.0.0.1:{port}",
            "--upstream", f"http://127.0.0.1:{upstream_port}/", "--oidc-issuer-url", issuer,
            "--client-id", client_id, "--client-secret", client_secret,
            "--cookie-secret", "bench-cookie-secret-0123456789ab", "--cookie-secure=false",
            "--email-domain", "*", "--skip-provider-button",
            "--shutdown-delay=0s",  # no ingress to tell: stop at once between setups
            *extra,
        ]  # fmt: skip
        return self.spawn(name, argv, port)


# What a careful operator sets on a 2-core machine (README, Performance, "How the peers are tuned"):
# - mpm_event, one process per core, each with enough threads for the load's connections, and spare
#   threads so that no process is started or stopped during a run;
# - keep-alive on, with no limit on the requests per connection, as nginx and oidcproxy do;
# - headers large enough for a 4,000-group session cookie (mod_auth_openidc splits it in 4 KB chunks);
# - the session cookies stripped before the request goes to the application;
# - the shared-memory cache sized for the sessions: an entry (256 KiB) holds the largest session (the
#   4,000-group one is about 216 KB sealed), and the 10,000 entries hold every session a run creates
#   (the login test opens about 1,000 per 10 s repetition, 3,000 in a run), so no session in use is
#   evicted. A lookup scans the entries in order until it finds its key; the bench's sessions,
#   created first, are found first.
_APACHE_TUNING = """
ServerLimit 2
StartServers 2
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 128
MinSpareThreads 64
MaxSpareThreads 128
MaxConnectionsPerChild 0
KeepAlive On
KeepAliveTimeout 5
MaxKeepAliveRequests 0
LimitRequestFieldSize 524288
LimitRequestLine 65536
OIDCCacheType shm
OIDCCacheShmMax 10000
OIDCCacheShmEntrySizeMax 262144
"""

# Its own session cookies are not passed to the application (a 4,000-group session is 50-odd chunks).
_APACHE_SESSION_COOKIES = " ".join(
    ["mod_auth_openidc_session", "mod_auth_openidc_session_chunks"]
    + [f"mod_auth_openidc_session_{i}" for i in range(100)]
)

# oauth2-proxy's production settings that bear on this bench (README, "How the peers are tuned"):
# PKCE, the groups claim, identity headers to the upstream, its request and auth logs on (ours logs
# requests too), no /ping logging. Like ours by default, /oauth2/auth answers 202 with no identity
# headers (--set-xauthrequest would add them to every proxied response as well).
_OAUTH2_PROXY_TUNING = (
    "--scope", "openid email profile",
    "--code-challenge-method", "S256",
    "--oidc-groups-claim", "groups",
    "--pass-user-headers",
    "--silence-ping-logging",
    "--reverse-proxy=false",
)  # fmt: skip


def chmod_for_apache(root: Path) -> None:
    """Apache's children run as www-data; let them reach the run dir (a temp dir is 0700)."""
    root.chmod(root.stat().st_mode | 0o711)
