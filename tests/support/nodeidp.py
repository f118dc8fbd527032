"""Runs the npm `oidc-provider` (tests/oidc-provider/server.mjs) as a real third-party OpenID provider.

Owns the node subprocess (start, wait for readiness, restart on the same port, stop) and walks the
provider's own login and consent pages over HTTP. Imports nothing from `oidcproxy`: the provider and
our client must not share code, so a shared bug cannot pass both sides.

    with start_node_idp(users={"alice": {...}}, extra_groups=3) as idp:
        ...  # idp.issuer, idp.client_id, idp.client_secret
        location = await provider_login(session, authorize_url, login="alice")
        idp.restart(new_key=True)  # same port, new signing key

Config keys accepted by `start_node_idp` (all optional; server.mjs has the same defaults):

- `port` (0: the OS picks one; `restart()` keeps it), `host` ("127.0.0.1").
- `issuer`: an origin without a path; default `http(s)://127.0.0.1:<port>`. Set it when the provider
  is reached through NGINX (`proxy` stays true so X-Forwarded-Proto/Host are honoured).
- `clients`: list of client metadata (`client_id`, `client_secret`, `redirect_uris`,
  `post_logout_redirect_uris`, `token_endpoint_auth_method` = client_secret_basic | client_secret_post,
  `grant_types`, default authorization_code + refresh_token). A registered redirect URI without a port
  matches any port on the same scheme, host and path; a path ending in `*` matches by prefix. The
  first client's id and secret appear on `NodeIdP`. Default: `DEFAULT_CLIENT`.
- `users`: login -> claims (`email`, `email_verified`, `name`, `preferred_username`, `groups`).
  Any other login signs in as a default account (email = login if it has an "@", else
  login@example.com; email_verified true). The password is never checked.
- `extra_groups`: N synthetic groups `group-0001`... appended to every user's `groups` (big tokens).
- `extra_claims`: names of further user claims to release with the `profile` scope (e.g. a
  Keycloak-style nested `realm_access`, or a comma-separated group string).
- `conform_id_token_claims`: True keeps scope claims (email, groups, ...) out of the ID token when an
  access token is issued, so they are only at userinfo (OIDC Core 5.4); default False.
- `ttl`: seconds for `AccessToken`, `IdToken`, `RefreshToken` (also `AuthorizationCode`, `Session`,
  `Grant`, `Interaction`). Refresh tokens go to every client with the refresh_token grant.
- `rotate_refresh_tokens`: True (default) rotates them on each use; a reused one gets invalid_grant
  and revokes the whole grant, so every later refresh of that session fails too.
- `signing_alg`: "RS256" (default) or "ES256"; one key with a `kid` is generated at start.
- `key_file`: JWKS file reused across restarts; defaults to one in the IdP's temp dir.
  `new_key=True` replaces the signing key at start, `keep_old_keys=True` keeps publishing old ones.
- `skip_consent`: False (default) shows oidc-provider's consent page once per provider session;
  True grants the requested scopes without asking.
- `tls`: {"cert": path, "key": path} PEM files to serve https instead of http.
- `proxy`: trust X-Forwarded-* (default true).
- `allow_loopback_requests`: let the provider's own requests (back-channel logout to a client's
  `backchannel_logout_uri`) reach loopback addresses, which oidc-provider refuses by default.

Features on: RP-initiated logout, back-channel logout (to each client's `backchannel_logout_uri`
when a provider session ends) and token revocation (RFC 7009).

The provider keeps its state in memory: a restart forgets sessions, grants and refresh tokens.
Its error pages are JSON (`{"error", "error_description"}`) so failures read well in test output.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp
from yarl import URL

from tests.support.forms import Form, forms_of

__all__ = [
    "DEFAULT_CLIENT",
    "NODE_DIR",
    "NodeIdP",
    "NodeIdPError",
    "ensure_node_modules",
    "provider_login",
    "provider_logout",
    "start_node_idp",
]

NODE_DIR = Path(__file__).resolve().parents[1] / "oidc-provider"
DEFAULT_CLIENT: dict[str, Any] = {
    "client_id": "oidcproxy",
    "client_secret": "oidcproxy-secret",
    "redirect_uris": ["http://127.0.0.1/oauth2/callback", "https://localhost/oauth2/callback"],
    "post_logout_redirect_uris": ["http://127.0.0.1/*", "https://localhost/*"],
}
_START_TIMEOUT_S = 60.0  # node can take 20 s+ to load oidc-provider on a loaded 2-core machine
_STOP_TIMEOUT_S = 5.0
_MAX_HOPS = 12


class NodeIdPError(RuntimeError):
    """The node provider would not start, or its pages did not lead back to the client."""


def ensure_node_modules() -> None:
    """Install tests/oidc-provider's locked dependencies unless the pinned provider is there."""
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["oidc-provider"]
    installed = NODE_DIR / "node_modules" / "oidc-provider" / "package.json"
    if installed.exists() and json.loads(installed.read_text())["version"] == wanted:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeIdPError("npm is not installed; the oidc-provider tests need Node.js >= 20.19")
    verb = "ci" if (NODE_DIR / "package-lock.json").exists() else "install"
    done = subprocess.run(
        [npm, verb, "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise NodeIdPError(f"npm {verb} failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}")


@dataclass(slots=True)
class NodeIdP:
    """A running `oidc-provider`; a context manager that stops it on exit."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    port: int
    config: dict[str, Any] = field(repr=False)
    _workdir: Path = field(repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def stderr(self) -> str:
        """What the provider wrote to stderr so far (warnings, server errors)."""
        return _read_log(self._workdir)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL). Idempotent; keeps the work dir for restart."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)
        _close_pipes(process)

    def restart(self, **changes: Any) -> None:
        """Stop, then start again on the same port, e.g. `restart(new_key=True)` to rotate keys.

        `new_key` and `keep_old_keys` apply to this start only; other changes stick.
        """
        self.stop()
        sticky = {k: v for k, v in changes.items() if k not in ("new_key", "keep_old_keys")}
        self.config = {**self.config, **sticky, "port": self.port}
        self._process, self.issuer, self.port = _spawn({**self.config, **changes}, self._workdir)

    def close(self) -> None:
        """Stop and remove the work dir (config, keys, logs)."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> NodeIdP:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_node_idp(**config: Any) -> NodeIdP:
    """Start server.mjs with `config` (keys in the module docstring) and wait until it listens."""
    ensure_node_modules()
    workdir = Path(tempfile.mkdtemp(prefix="nodeidp-"))
    config = {"clients": [DEFAULT_CLIENT], "key_file": str(workdir / "jwks.json"), **config}
    try:
        process, issuer, port = _spawn(config, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    first = config["clients"][0]
    return NodeIdP(
        issuer=issuer,
        client_id=first["client_id"],
        client_secret=first.get("client_secret", ""),
        port=port,
        config={k: v for k, v in config.items() if k not in ("new_key", "keep_old_keys")},
        _workdir=workdir,
        _process=process,
    )


def _read_log(workdir: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        return (workdir / "stderr.log").read_text(errors="replace")
    return ""


def _spawn(config: dict[str, Any], workdir: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    node = shutil.which("node")
    if node is None:
        raise NodeIdPError("node is not installed; the oidc-provider tests need Node.js >= 20.19")
    if config.get("issuer") and not config.get("port"):
        # The issuer may name another host (NGINX in front), so the port must be chosen here.
        config = {**config, "port": _free_port(config.get("host", "127.0.0.1"))}
    config_file = workdir / "config.json"
    # exit_on_stdin_eof: node exits when this process dies and the stdin pipe closes.
    config_file.write_text(json.dumps({**config, "exit_on_stdin_eof": True}))
    with (workdir / "stderr.log").open("ab") as log:
        process = subprocess.Popen(
            [node, str(NODE_DIR / "server.mjs"), str(config_file)],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        issuer = _await_listening(process)
    except NodeIdPError as exc:
        _kill(process)
        raise NodeIdPError(f"{exc}; its stderr:\n{_read_log(workdir)}") from None
    except BaseException:
        _kill(process)
        raise
    return process, issuer, int(config.get("port") or URL(issuer).port or 0)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _await_listening(process: subprocess.Popen[bytes]) -> str:
    """Read stdout until the one `LISTENING <issuer>` line, the process exits, or time runs out."""
    assert process.stdout is not None
    deadline = time.monotonic() + _START_TIMEOUT_S
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NodeIdPError(f"oidc-provider did not start in {_START_TIMEOUT_S}s")
            if not selector.select(timeout=left):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise NodeIdPError(f"oidc-provider exited with {process.wait()} before listening")
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode()
    if not line.startswith("LISTENING "):
        raise NodeIdPError(f"unexpected first line from oidc-provider: {line!r}")
    return line.removeprefix("LISTENING ").strip()


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(timeout=_STOP_TIMEOUT_S)
    _close_pipes(process)


def _close_pipes(process: subprocess.Popen[bytes]) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


# --- walking the provider's pages ----------------------------------------------------------------


async def provider_login(
    session: aiohttp.ClientSession,
    authorize_url: str,
    *,
    login: str,
    password: str = "pw",  # noqa: S107 - devInteractions accepts any password
) -> str:
    """Sign in at the provider and return the redirect back to the client, without following it.

    Starts with GET `authorize_url` (where the proxy's /oauth2/start sent the browser), then fills
    each page's form as a person would: login and password on the login page, "Continue" on the
    consent page, following the provider's own redirects. Returns the first redirect that leaves
    the provider for the client's `redirect_uri` (`.../oauth2/callback?code=...&state=...`, or
    `?error=...`). With an existing provider session it returns after the first redirect.

    `session` keeps the provider's cookies. For a provider on an IP address such as 127.0.0.1
    its cookie jar must be `aiohttp.CookieJar(unsafe=True)`: the default jar drops those cookies.
    """
    redirect_uri = parse_qs(urlsplit(authorize_url).query).get("redirect_uri", [None])[0]
    provider_origin = _origin(authorize_url)
    method, url, data = "GET", authorize_url, None
    for _ in range(_MAX_HOPS):
        async with session.request(method, url, data=data, allow_redirects=False) as resp:
            body = await resp.text()
            location = resp.headers.get("Location")
        if location is not None and 300 <= resp.status < 400:
            target = urljoin(url, location)
            if _leaves_provider(target, redirect_uri, provider_origin):
                return target
            method, url, data = "GET", target, None
            continue
        if resp.status != 200:
            hint = _cookie_hint(session, url)
            raise NodeIdPError(f"{method} {url} -> {resp.status}: {body[:500]}{hint}")
        form = _only_form(url, body)
        data = {**form.fields}
        if "login" in data:
            data.update(login=login, password=password)
        method, url = form.method, urljoin(url, form.action)
    raise NodeIdPError(f"no redirect back to the client after {_MAX_HOPS} hops")


async def provider_logout(session: aiohttp.ClientSession, end_session_url: str) -> str:
    """Confirm RP-initiated logout at the provider; return where it redirects, without following.

    GET `end_session_url` (the provider's end_session_endpoint with the client's parameters) shows
    oidc-provider's "Do you want to sign-out?" page; this answers "yes" and returns the redirect:
    the `post_logout_redirect_uri` (with `state`), or the provider's own success page.
    """
    async with session.get(end_session_url, allow_redirects=False) as resp:
        body = await resp.text()
        if resp.status != 200:
            raise NodeIdPError(f"GET {end_session_url} -> {resp.status}: {body[:500]}")
    form = _only_form(end_session_url, body)
    action = urljoin(end_session_url, form.action)
    # The "Yes, sign me out" button sits outside the form (form= attribute): send its value.
    data = {**form.fields, "logout": "yes"}
    async with session.post(action, data=data, allow_redirects=False) as resp:
        body = await resp.text()
        location = resp.headers.get("Location")
        if location is None or not 300 <= resp.status < 400:
            raise NodeIdPError(f"POST {action} -> {resp.status}: {body[:500]}")
    return urljoin(action, location)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _leaves_provider(target: str, redirect_uri: str | None, provider_origin: str) -> bool:
    if redirect_uri is not None:
        return target.split("?", 1)[0].split("#", 1)[0] == redirect_uri.split("?", 1)[0]
    return _origin(target) != provider_origin


def _only_form(url: str, body: str) -> Form:
    forms = forms_of(body)
    if len(forms) != 1:
        raise NodeIdPError(f"expected one form at {url}, found {len(forms)}: {body[:500]}")
    return forms[0]


def _cookie_hint(session: aiohttp.ClientSession, url: str) -> str:
    # The interaction pages need the provider's cookies; a jar that refused them shows up as
    # "interaction session id cookie not found", which hides the real cause.
    if session.cookie_jar.filter_cookies(URL(url)):
        return ""
    return (
        f"\n(the session's cookie jar holds no cookie for {url}: "
        "use aiohttp.CookieJar(unsafe=True) for a provider on an IP address)"
    )
