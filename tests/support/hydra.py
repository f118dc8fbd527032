"""Runs Ory Hydra v2 (built from its Go module) as a real, OpenID-certified provider, with its login app.

Owns the `hydra serve all --dev` subprocess (in-memory SQLite, free loopback ports) and the login and
consent app Hydra needs (an aiohttp app on its own thread and loop, in this module). Builds and caches
the binary under `.cache/peers/hydra/` (git-ignored) on first use. Imports nothing from `oidcproxy`.

    reason = hydra_missing()                        # None, or why these tests cannot run (no Go)
    with start_hydra(users={"alice": {...}}) as hydra:
        hydra.create_client({"client_id": "dash", "redirect_uris": [exact_url], ...})
        location = await hydra_login(session, authorize_url, login="alice")
        back = await hydra_logout(session, end_session_url)   # the app accepts the logout request
        hydra.logout_session(sid)            # the admin ends one login session (back-channel logout)

The login app accepts any user in `users` (any password) and grants every requested scope; the ID
token carries the user's claims (`email`, `email_verified`, `preferred_username`, `groups`...). It
accepts every logout request too (Hydra's logout UI, `urls.logout`): RP-initiated logout at
`/oauth2/sessions/logout` then ends the login session and posts back-channel logout tokens
(asynchronously) to the clients that have a `backchannel_logout_uri`.
Hydra's own habits stay: opaque access tokens, exact redirect URI matching, refresh tokens only with
the `offline_access` scope, rotated on every use (v2.3.0 sends no `iss` with the code).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
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
from aiohttp import web

from tests.support.keycloak import die_with_parent

__all__ = [
    "HYDRA_VERSION",
    "Hydra",
    "HydraError",
    "ensure_hydra",
    "hydra_login",
    "hydra_logout",
    "hydra_missing",
    "start_hydra",
]

HYDRA_VERSION = "v2.3.0"
REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / ".cache" / "peers" / f"hydra-{HYDRA_VERSION}"
# Hydra's go.mod replaces pop with Ory's fork; a module that imports Hydra must say so again.
_POP_FORK = "github.com/gobuffalo/pop/v6=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_MAX_HOPS = 10


class HydraError(RuntimeError):
    """Hydra could not be built or started, or its flow did not lead back to the client."""


def _binary() -> Path:
    return BUILD_DIR / "hydra"


def hydra_missing() -> str | None:
    """Why the Hydra tests cannot run on this machine, or None when they can."""
    if not _binary().exists() and shutil.which("go") is None:
        return "Hydra tests not run: Go is not installed to build Hydra (apt-get install golang)"
    if not _binary().exists() and shutil.which("gcc") is None:
        return "Hydra tests not run: gcc is needed to build Hydra with SQLite (apt-get install gcc)"
    return None


def ensure_hydra() -> Path:
    """The Hydra binary, built once (`go get -tool`, then `go build -tags sqlite`) into the cache."""
    binary = _binary()
    if binary.exists():
        return binary
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "1"}
    steps = [
        ["go", "mod", "init", "hydra-fixture"],
        ["go", "mod", "edit", f"-replace={_POP_FORK}"],
        ["go", "get", "-tool", f"github.com/ory/hydra/v2@{HYDRA_VERSION}"],
        [
            "go",
            "build",
            "-tags",
            "sqlite,sqlite_omit_load_extension",
            "-o",
            "hydra.tmp",
            "github.com/ory/hydra/v2",
        ],
    ]
    if (BUILD_DIR / "go.mod").exists():
        steps = steps[-1:]
    for step in steps:
        done = subprocess.run(
            step, cwd=BUILD_DIR, env=env, capture_output=True, text=True, timeout=3000, check=False
        )
        if done.returncode != 0:
            raise HydraError(f"{' '.join(step)} failed in {BUILD_DIR}:\n{done.stdout}\n{done.stderr}")
    (BUILD_DIR / "hydra.tmp").rename(binary)
    return binary


@dataclass(slots=True)
class Hydra:
    """A running Hydra and its login app; a context manager that stops both."""

    issuer: str
    admin_url: str
    _workdir: Path = field(repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _app: _LoginApp | None = field(default=None, repr=False)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return (self._workdir / "hydra.log").read_text(errors="replace")
        return ""

    def create_client(self, client: dict[str, Any]) -> dict[str, Any]:
        """Register an OAuth 2.0 client through the admin API; the client as Hydra stored it."""
        body = {
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "openid offline_access email profile groups",
            "token_endpoint_auth_method": "client_secret_basic",
            **client,
        }
        created: dict[str, Any] = _http("POST", f"{self.admin_url}/admin/clients", body)
        return created

    def logout_session(self, sid: str) -> None:
        """The admin ends one login session (`sid`, as in the ID token); Hydra then posts back-channel
        logout tokens to its clients, asynchronously. Blocking: call it off the proxy's event loop."""
        query = urllib.parse.urlencode({"sid": sid})
        _http("DELETE", f"{self.admin_url}/admin/oauth2/auth/sessions/login?{query}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT_S)
        app, self._app = self._app, None
        if app is not None:
            app.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Hydra:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_hydra(*, users: dict[str, dict[str, Any]], ttl: str = "1h") -> Hydra:
    """Start the login app and `hydra serve all --dev` on free loopback ports; wait until ready."""
    binary = ensure_hydra()
    workdir = Path(tempfile.mkdtemp(prefix="hydra-"))
    public, admin = _free_port(), _free_port()
    admin_url = f"http://127.0.0.1:{admin}"
    app = _LoginApp(admin_url, users, _free_port())
    app_url = app.url
    env = {
        **os.environ,
        "DSN": "memory",
        "SERVE_PUBLIC_HOST": "127.0.0.1",
        "SERVE_PUBLIC_PORT": str(public),
        "SERVE_ADMIN_HOST": "127.0.0.1",
        "SERVE_ADMIN_PORT": str(admin),
        "URLS_SELF_ISSUER": f"http://127.0.0.1:{public}",
        "URLS_LOGIN": f"{app_url}/login",
        "URLS_CONSENT": f"{app_url}/consent",
        "URLS_LOGOUT": f"{app_url}/logout",
        "SECRETS_SYSTEM": secrets.token_hex(16),
        "TTL_ACCESS_TOKEN": ttl,
        "TTL_ID_TOKEN": ttl,
        "LOG_LEVEL": "warn",
        "SQA_OPT_OUT": "true",
    }
    with (workdir / "hydra.log").open("ab") as log:
        process = subprocess.Popen(
            [str(binary), "serve", "all", "--dev", "--sqa-opt-out"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    app.start()  # after the fork: the child must not inherit the app's thread
    hydra = Hydra(f"http://127.0.0.1:{public}", admin_url, workdir, process, app)
    try:
        _await_ready(hydra, process)
    except BaseException:
        log_text = hydra.log
        hydra.stop()
        raise HydraError(f"Hydra did not start; its log:\n{log_text[-4000:]}") from None
    return hydra


def _await_ready(hydra: Hydra, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HydraError(f"hydra exited with {process.returncode}")
        with contextlib.suppress(OSError):
            _http("GET", f"{hydra.admin_url}/health/ready")
            _http("GET", hydra.discovery_url)
            return
        time.sleep(0.2)
    raise HydraError(f"Hydra did not answer in {_START_TIMEOUT_S}s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, body: Any = None) -> Any:
    """A blocking JSON call (fixture set-up only, never inside a test's event loop)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise HydraError(f"{method} {url} -> {exc.code}: {exc.read()[:500]!r}") from None
    return json.loads(raw) if raw else None


# --- the login and consent app ---------------------------------------------------------------------


_LOGIN_PAGE = """<!doctype html><title>Sign in</title>
<form method="post" action="/login"><input type="hidden" name="challenge" value="{challenge}">
<input name="login"><input name="password" type="password"><button>Sign in</button></form>"""


class _LoginApp:
    """Hydra's login, consent and logout UI: a form for the login; consent and logout granted
    without asking."""

    def __init__(self, admin_url: str, users: dict[str, dict[str, Any]], port: int) -> None:
        self.admin_url = admin_url
        self.users = users
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="hydra-login-app", daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_get("/consent", self._consent)
        app.router.add_get("/logout", self._logout)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _admin(
        self, method: str, path: str, challenge_kind: str, challenge: str, body: Any = None
    ) -> Any:
        url = f"{self.admin_url}/admin/oauth2/auth/requests/{path}"
        async with aiohttp.ClientSession() as http:
            async with http.request(method, url, params={challenge_kind: challenge}, json=body) as resp:
                answer = await resp.json()
                if resp.status >= 400:
                    raise web.HTTPBadGateway(text=json.dumps(answer))
                return answer

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        challenge = request.query["login_challenge"]
        asked = await self._admin("GET", "login", "login_challenge", challenge)
        if asked.get("skip"):  # Hydra remembers the person: accept without asking again
            return await self._accept_login(challenge, asked["subject"])
        return web.Response(text=_LOGIN_PAGE.format(challenge=challenge), content_type="text/html")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        login, challenge = str(form["login"]), str(form["challenge"])
        if login not in self.users:
            return web.Response(status=401, text=f"no such test user: {login}")
        return await self._accept_login(challenge, login)

    async def _accept_login(self, challenge: str, subject: str) -> web.StreamResponse:
        body = {"subject": subject, "remember": True, "remember_for": 3600}
        done = await self._admin("PUT", "login/accept", "login_challenge", challenge, body)
        raise web.HTTPFound(done["redirect_to"])

    async def _consent(self, request: web.Request) -> web.StreamResponse:
        challenge = request.query["consent_challenge"]
        asked = await self._admin("GET", "consent", "consent_challenge", challenge)
        claims = self.users.get(asked["subject"], {})
        body = {
            "grant_scope": asked["requested_scope"],
            "grant_access_token_audience": asked["requested_access_token_audience"],
            "remember": True,
            "remember_for": 3600,
            "session": {"id_token": claims, "access_token": {}},
        }
        done = await self._admin("PUT", "consent/accept", "consent_challenge", challenge, body)
        raise web.HTTPFound(done["redirect_to"])

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        challenge = request.query["logout_challenge"]
        await self._admin("GET", "logout", "logout_challenge", challenge)  # who and which client asks
        done = await self._admin("PUT", "logout/accept", "logout_challenge", challenge)
        raise web.HTTPFound(done["redirect_to"])


async def hydra_login(
    session: aiohttp.ClientSession,
    authorize_url: str,
    *,
    login: str,
) -> str:
    """Sign in through Hydra and the login app; return the redirect back to the client, not followed.

    Follows Hydra's redirects to the login app, posts its form with `login`, and follows on through
    consent until a redirect goes to the client's `redirect_uri` (with `code`, `state` and `scope`).
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
        if resp.status != 200 or 'name="challenge"' not in body:
            raise HydraError(f"{method} {url} -> {resp.status}: {body[:800]}")
        challenge = body.split('name="challenge" value="', 1)[1].split('"', 1)[0]
        method, url, data = (
            "POST",
            urljoin(url, "/login"),
            {"challenge": challenge, "login": login, "password": "pw"},
        )
    raise HydraError(f"no redirect back to the client after {_MAX_HOPS} hops")


async def hydra_logout(session: aiohttp.ClientSession, end_session_url: str) -> str:
    """Log out at Hydra's end_session_endpoint; return the redirect to `post_logout_redirect_uri`.

    Follows Hydra's redirects through the login app's logout page (which accepts) and Hydra's
    logout verifier, until one leaves for the client's `post_logout_redirect_uri` (with `state`).
    """
    back_to = parse_qs(urlsplit(end_session_url).query)["post_logout_redirect_uri"][0]
    url = end_session_url
    for _ in range(_MAX_HOPS):
        async with session.get(url, allow_redirects=False) as resp:
            body = await resp.text()
            location = resp.headers.get("Location")
        if location is None or not 300 <= resp.status < 400:
            raise HydraError(f"GET {url} -> {resp.status}: {body[:800]}")
        url = urljoin(url, location)
        if url.split("?", 1)[0] == back_to:
            return url
    raise HydraError(f"no redirect back to the client after {_MAX_HOPS} hops")
