"""A real NGINX from Debian on loopback, with our own config, TLS from trustme; and an upstream that,
like the dashboards behind it, accepts 64 KiB header lines. Also the server blocks the e2e tests put
NGINX in front of the proxy with (sidecar, auth_request), and a sign-in through it.

    with run_nginx(tmp_path, server_block, cert) as nginx:   # nginx.port, nginx.error_log()
        ...

Imports nothing from `oidcproxy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from tests.support.nodeidp import provider_login

__all__ = [
    "BIG",
    "CLOSED",
    "PROXY_HEADERS",
    "Nginx",
    "Tls",
    "auth_request_server",
    "big_header_upstream",
    "free_port",
    "nginx_binary",
    "run_nginx",
    "sidecar_server",
    "sign_in_through",
]

BIG = {"max_field_size": 65536, "max_line_size": 65536}
CLOSED = web.AppKey("closed", asyncio.Queue[int])  # close codes the upstream saw, one per socket
_START_TIMEOUT_S = 15.0


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path is None:
        raise RuntimeError("nginx is not installed; scripts/test.sh installs it (apt-get install nginx)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Nginx:
    port: int
    prefix: Path
    process: subprocess.Popen[bytes]

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _config(prefix: Path, port: int, server: str, cert: Path, key: Path) -> str:
    return f"""
worker_processes 1;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
{server}
    }}
}}
"""


@contextlib.contextmanager
def run_nginx(prefix: Path, server: str, cert: Path, key: Path) -> Iterator[Nginx]:
    """Start nginx in the foreground with `server` as the body of its one TLS server block."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(_config(prefix, port, server, cert, key))
    binary = nginx_binary()
    check = subprocess.run([binary, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx config rejected:\n{check.stderr.decode()}\n{conf.read_text()}")
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-g", f"daemon off; pid {prefix}/nginx.pid;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    nginx = Nginx(port, prefix, process)
    try:
        _await_port(process, port)
        yield nginx
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _await_port(process: subprocess.Popen[bytes], port: int) -> None:
    """Poll-connect until nginx accepts (it has no readiness line); fail fast if it exits."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"nginx exited with {process.returncode}: {err}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError("nginx did not start listening")


def big_header_upstream() -> web.Application:
    """Echoes the request (method, path, headers) as JSON; /ws echoes WebSocket messages and reports
    the handshake headers; /ws-close closes with the code it is sent as text."""

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "path": request.raw_path,
                "headers": dict(request.headers),
                "header_list": [[k, v] for k, v in request.headers.items()],
            }
        )

    async def ws(request: web.Request) -> web.StreamResponse:
        socket_ = web.WebSocketResponse(protocols=("chat", "graphql-ws"), autoping=False, max_msg_size=0)
        await socket_.prepare(request)
        await socket_.send_str(json.dumps({"hello": dict(request.headers)}))
        while True:
            msg = await socket_.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                # a close the proxy sent carries its code; close_code would hold our own reply
                seen = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else socket_.close_code
                break
            if msg.type is aiohttp.WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    code, _, why = msg.data[6:].partition(":")
                    await socket_.close(code=int(code), message=why.encode())
                elif msg.data == "ping-me":
                    await socket_.ping(b"from-upstream")
                else:
                    await socket_.send_str("echo:" + msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await socket_.send_bytes(msg.data[::-1])
            elif msg.type is aiohttp.WSMsgType.PING:
                await socket_.pong(msg.data)
                await socket_.send_str("saw-ping:" + msg.data.decode())
            elif msg.type is aiohttp.WSMsgType.PONG:
                await socket_.send_str("saw-pong:" + msg.data.decode())
        request.app[CLOSED].put_nowait(seen or 0)
        return socket_

    app = web.Application(handler_args=BIG)
    app[CLOSED] = asyncio.Queue()
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


# The documented lines: X-Forwarded-Proto for the callback URL, big header buffers for big tokens.
PROXY_HEADERS = """
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffer_size 128k;
            proxy_buffers 8 128k;
            proxy_busy_buffers_size 256k;
"""


def sidecar_server(proxy_port: int, *, forwarded_proto: bool = True) -> str:
    headers = (
        PROXY_HEADERS
        if forwarded_proto
        else PROXY_HEADERS.replace("proxy_set_header X-Forwarded-Proto $scheme;", "")
    )
    return f"""
        large_client_header_buffers 4 64k;
        location / {{
            proxy_pass http://127.0.0.1:{proxy_port};
{headers}
        }}
"""


def auth_request_server(proxy_port: int, app_port: int) -> str:
    return f"""
        large_client_header_buffers 4 64k;
        location /oauth2/ {{
            proxy_pass http://127.0.0.1:{proxy_port};
{PROXY_HEADERS}
        }}
        location = /oauth2/auth {{
            internal;
            proxy_pass http://127.0.0.1:{proxy_port};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
{PROXY_HEADERS}
        }}
        location / {{
            auth_request /oauth2/auth;
            error_page 401 = @signin;
            auth_request_set $auth_user $upstream_http_x_auth_request_user;
            auth_request_set $auth_email $upstream_http_x_auth_request_email;
            auth_request_set $auth_groups $upstream_http_x_auth_request_groups;
            auth_request_set $auth_header $upstream_http_authorization;
            auth_request_set $auth_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $auth_cookie;
            proxy_set_header X-Auth-Request-User $auth_user;
            proxy_set_header X-Auth-Request-Email $auth_email;
            proxy_set_header X-Auth-Request-Groups $auth_groups;
            proxy_set_header Authorization $auth_header;
            proxy_pass http://127.0.0.1:{app_port};
{PROXY_HEADERS}
        }}
        location @signin {{
            return 302 /oauth2/start?rd=$scheme://$http_host$request_uri;
        }}
"""


HTML = {"Accept": "text/html"}


@dataclass
class Tls:
    cert: Path
    key: Path
    client: ssl.SSLContext


async def sign_in_through(
    browser: aiohttp.ClientSession, base: URL, path: str
) -> tuple[str, aiohttp.ClientResponse]:
    """Follow the login by hand through NGINX; (redirect_uri the proxy asked for, final response)."""
    first = await browser.get(base.join(URL(path)), headers=HTML, allow_redirects=False)
    assert first.status == 302, await first.text()
    hop = base.join(URL(first.headers["Location"]))
    if hop.path == "/oauth2/sign_in":
        hop = base.join(URL("/oauth2/start")).with_query(rd=hop.query["rd"])
    start = await browser.get(hop, allow_redirects=False)
    assert start.status == 302, await start.text()
    authorize = start.headers["Location"]
    redirect_uri = URL(authorize).query["redirect_uri"]
    callback = await provider_login(browser, authorize, login="alice")
    assert callback.startswith(redirect_uri)
    done = await browser.get(callback, headers=HTML, allow_redirects=False)
    assert done.status == 302, await done.text()
    final = await browser.get(base.join(URL(done.headers["Location"])), headers=HTML, allow_redirects=False)
    return redirect_uri, final
