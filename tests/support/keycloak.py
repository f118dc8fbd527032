"""Runs Keycloak (the Quarkus distribution from Maven Central) as a real, OpenID-certified provider.

Owns the Java subprocess: fetches, builds (`kc.sh build --db=dev-mem`) and caches the distribution
under `.cache/peers/` (git-ignored), starts `kc.sh start --optimized` in production mode over plain
http on free loopback ports with an in-memory database, imports the realm in
tests/keycloak/realm.json through the admin API, and stops it. Walks Keycloak's real login form over
HTTP. Imports nothing from `oidcproxy`, so a bug shared by both sides cannot pass.

    reason = keycloak_missing()          # None, or why these tests cannot run here (no Java)
    with start_keycloak(crowd_groups=300) as kc:
        kc.issuer                        # http://127.0.0.1:<port>/realms/acme
        location = await keycloak_login(session, authorize_url, login="alice")

The realm (see tests/keycloak/realm.json) has the proxy's confidential client `oidcproxy`
(secret `oidcproxy-secret`, refresh tokens rotated and revoked on reuse, a group-membership mapper
with full paths), a public CLI client `kubectl` (password grant, an audience mapper adding
`oidcproxy`), users `alice` and `bob` (password `<login>-pw`) with groups and realm roles, and the
user `crowd` added here, in `crowd_groups` groups `/teams/team-NNN`. The client's sign-out URLs
(post-logout redirect, back-channel logout) are placeholders: each sign-out test registers its own
proxy's through `admin`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp

from tests.support.forms import forms_of

__all__ = [
    "KEYCLOAK_VERSION",
    "REALM",
    "Keycloak",
    "KeycloakError",
    "die_with_parent",
    "ensure_keycloak",
    "keycloak_login",
    "keycloak_missing",
    "start_keycloak",
]

KEYCLOAK_VERSION = "26.4.7"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "peers"
REALM_FILE = REPO / "tests" / "keycloak" / "realm.json"
REALM = "acme"
_START_TIMEOUT_S = 180.0  # ~15 s on two cores when idle, several times that when they are busy
_STOP_TIMEOUT_S = 20.0
_MAX_HOPS = 8
_PR_SET_PDEATHSIG = 1


class KeycloakError(RuntimeError):
    """Keycloak could not be fetched or started, or its pages did not lead back to the client."""


def _home() -> Path:
    return CACHE / f"keycloak-{KEYCLOAK_VERSION}"


def keycloak_missing() -> str | None:
    """Why the Keycloak tests cannot run on this machine, or None when they can."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Keycloak tests not run: Java 17+ is not installed (apt-get install openjdk-17-jre-headless)"
    if not (_home() / "bin" / "kc.sh").exists() and shutil.which("mvn") is None:
        return f"Keycloak tests not run: {_home()} is missing and Maven (mvn) is not installed to fetch it"
    return None


def ensure_keycloak() -> Path:
    """The unpacked distribution, fetched from Maven Central into the cache on first use."""
    home = _home()
    if not (home / "bin" / "kc.sh").exists():
        _fetch()
    built = home / ".built-for-tests"
    if not built.exists():
        # The Quarkus build step, once: `start --optimized` then boots in ~20 s instead of ~60 s.
        _run([str(home / "bin" / "kc.sh"), "build", "--db=dev-mem"], "kc.sh build")
        built.write_text("kc.sh build --db=dev-mem\n")
    return home


def _run(args: list[str], what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise KeycloakError(f"{what} failed:\n{done.stdout}\n{done.stderr}")


def _fetch() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    artifact = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:tar.gz"
    _run(
        ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={CACHE}"], "mvn"
    )
    tarball = CACHE / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.tar.gz"
    _run(["tar", "xzf", str(tarball), "-C", str(CACHE)], f"unpacking {tarball}")
    tarball.unlink()


@dataclass(slots=True)
class Keycloak:
    """A running Keycloak with the test realm; a context manager that stops it on exit."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    _admin_password: str = field(repr=False)
    _workdir: Path = field(repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{REALM}"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return (self._workdir / "keycloak.log").read_text(errors="replace")
        return ""

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the admin REST API (`/admin/realms/...`) as the bootstrap admin; the JSON answer."""
        token = _password_grant(
            f"{self.base_url}/realms/master/protocol/openid-connect/token",
            "admin-cli",
            "admin",
            self._admin_password,
        )["access_token"]
        return _http(method, f"{self.base_url}/admin{path}", body, {"Authorization": f"Bearer {token}"})

    def password_grant(self, client_id: str, login: str) -> dict[str, Any]:
        """Tokens for `login` issued to `client_id` by the password grant (a CLI signing in)."""
        return _password_grant(self.token_url, client_id, login, f"{login}-pw", scope="openid email profile")

    def refresh(self, refresh_token: str, *, client_id: str = "kubectl") -> tuple[int, dict[str, Any]]:
        """Redeem a refresh token of the public client `client_id`; (status, JSON answer)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
        try:
            return 200, _http("POST", self.token_url, form)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _terminate(process)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Keycloak:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_keycloak(*, crowd_groups: int = 300) -> Keycloak:
    """Start Keycloak on free loopback ports, import the realm, and wait until it answers.

    While working on these tests, `OIDCPROXY_TEST_KEYCLOAK="<base url> <admin password>"` reuses
    a Keycloak started by hand with `start_keycloak` (and the realm imported), saving a minute a run.
    """
    if running := os.environ.get("OIDCPROXY_TEST_KEYCLOAK"):
        base_url, admin_password = running.split()
        client = json.loads(REALM_FILE.read_text())["clients"][0]
        workdir = Path(tempfile.mkdtemp(prefix="keycloak-"))
        return Keycloak(base_url, client["clientId"], client["secret"], admin_password, workdir)
    home = ensure_keycloak()
    workdir = Path(tempfile.mkdtemp(prefix="keycloak-"))
    port, management = _free_port(), _free_port()
    password = secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
        "KC_BOOTSTRAP_ADMIN_PASSWORD": password,
        "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m",
        # The client compiler only: boots in about half the time on two cores (~15 s instead of ~35 s
        # when idle), and a test's few hundred requests never need C2's optimised code.
        "JAVA_OPTS_APPEND": "-XX:TieredStopAtLevel=1",
    }
    args = [
        str(home / "bin" / "kc.sh"),
        "start",
        "--optimized",  # built by ensure_keycloak with --db=dev-mem: an in-memory H2 database
        "--http-enabled=true",
        "--hostname-strict=false",  # the issuer follows the URL it is reached at (127.0.0.1:<port>)
        "--http-host=127.0.0.1",
        f"--http-port={port}",
        f"--http-management-port={management}",
        "--log-level=warn",
    ]
    with (workdir / "keycloak.log").open("ab") as log:
        process = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    client = json.loads(REALM_FILE.read_text())["clients"][0]
    kc = Keycloak(
        f"http://127.0.0.1:{port}", client["clientId"], client["secret"], password, workdir, process
    )
    try:
        _await_ready(kc, process)
        kc.admin("POST", "/realms", realm(crowd_groups))
    except BaseException:
        log_text = kc.log
        kc.stop()
        raise KeycloakError(f"Keycloak did not start; its log:\n{log_text[-4000:]}") from None
    return kc


def realm(crowd_groups: int) -> dict[str, Any]:
    """tests/keycloak/realm.json plus the user `crowd` in `crowd_groups` groups (a large session)."""
    data: dict[str, Any] = json.loads(REALM_FILE.read_text())
    teams = [{"name": f"team-{i:03d}", "path": f"/teams/team-{i:03d}"} for i in range(crowd_groups)]
    data["groups"].append({"name": "teams", "path": "/teams", "subGroups": teams})
    data["users"].append(
        {
            "username": "crowd",
            "enabled": True,
            "email": "crowd@example.com",
            "emailVerified": True,
            "firstName": "Crowd",
            "lastName": "Member",
            "credentials": [{"type": "password", "value": "crowd-pw", "temporary": False}],
            "realmRoles": ["default-roles-acme", "dashboard-user"],
            "groups": [t["path"] for t in teams],
        }
    )
    return data


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies, so no provider outlives it.

    kc.sh forwards SIGTERM to its java; Linux only (prctl), elsewhere a no-op.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _await_ready(kc: Keycloak, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    url = f"{kc.base_url}/realms/master/.well-known/openid-configuration"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise KeycloakError(f"kc.sh exited with {process.returncode}")
        with contextlib.suppress(OSError):
            _http("GET", url)
            return
        time.sleep(0.5)
    raise KeycloakError(f"Keycloak did not answer in {_START_TIMEOUT_S}s")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=_STOP_TIMEOUT_S)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """A blocking JSON call: set-up, or a test's own call to Keycloak while no proxy request is in flight."""
    data, hdrs = None, dict(headers or {})
    if isinstance(body, dict) and "grant_type" in body:
        data = urllib.parse.urlencode(body).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    with urllib.request.urlopen(request, timeout=60) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def _password_grant(url: str, client_id: str, login: str, password: str, scope: str = "openid") -> Any:
    form = {"grant_type": "password", "client_id": client_id, "username": login, "password": password}
    return _http("POST", url, {**form, "scope": scope})


# --- walking Keycloak's login page -----------------------------------------------------------------


async def keycloak_login(session: aiohttp.ClientSession, authorize_url: str, *, login: str) -> str:
    """Sign in on Keycloak's login page; return its redirect back to the client, not followed.

    GET `authorize_url`, fill the form that has `username` and `password` with `<login>-pw`, and
    follow Keycloak's own redirects until one leaves for the `redirect_uri`. With a Keycloak
    session (its cookies in `session`) the first redirect already goes back.
    """
    redirect_uri = parse_qs(urlsplit(authorize_url).query)["redirect_uri"][0]
    method, url, data = "GET", authorize_url, None
    for _ in range(_MAX_HOPS):
        async with session.request(method, url, data=data, allow_redirects=False) as resp:
            body = await resp.text()
            location = resp.headers.get("Location")
        if location is not None and 300 <= resp.status < 400:
            url, method, data = urljoin(url, location), "GET", None
            if url.split("?", 1)[0] == redirect_uri.split("?", 1)[0]:
                return url
            continue
        forms = [f for f in forms_of(body) if "username" in f.fields and "password" in f.fields]
        if resp.status != 200 or len(forms) != 1:
            raise KeycloakError(f"{method} {url} -> {resp.status}, no login form: {body[:800]}")
        data = {**forms[0].fields, "username": login, "password": f"{login}-pw"}
        method, url = "POST", urljoin(url, forms[0].action)
    raise KeycloakError(f"no redirect back to the client after {_MAX_HOPS} hops")
