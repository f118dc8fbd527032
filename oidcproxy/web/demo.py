"""The built-in demo upstream for `--dev`: a "whoami" page of what the proxy forwarded, and a
WebSocket echo at /demo-ws.

Imports only aiohttp and the standard library (no other oidcproxy module): it plays an
independent application behind the proxy. It shows what it received and verifies nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from html import escape
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["build_demo_app"]

_IDENTITY_PREFIX = "x-forwarded-"
_SECRET_MARKERS = ("token", "secret", "cookie")


def build_demo_app() -> web.Application:
    """The whoami app: any path renders the page (or JSON); /demo-ws echoes WebSocket messages."""
    app = web.Application()
    app.router.add_get("/demo-ws", _echo)
    app.router.add_route("*", "/{tail:.*}", _whoami)
    return app


async def _whoami(request: web.Request) -> web.Response:
    report = _report(request)
    accept = request.headers.get("Accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return web.json_response(report, headers={"Cache-Control": "no-store"})
    return web.Response(text=_page(report), content_type="text/html", headers={"Cache-Control": "no-store"})


async def _echo(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    if not ws.can_prepare(request).ok:
        return web.Response(status=426, text="WebSocket endpoint: connect with ws:// or wss://")
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


def _report(request: web.Request) -> dict[str, Any]:
    """Everything the page shows, as plain data (also the JSON answer)."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        if name.lower().startswith(_IDENTITY_PREFIX):
            shown = _masked(name, value)
            headers[name] = f"{headers[name]}, {shown}" if name in headers else shown
    authorization = request.headers.get("Authorization", "")
    groups = request.headers.get("X-Forwarded-Groups", "")
    return {
        "path": request.path_qs,
        "user": request.headers.get("X-Forwarded-User", ""),
        "email": request.headers.get("X-Forwarded-Email", ""),
        "preferred_username": request.headers.get("X-Forwarded-Preferred-Username", ""),
        "groups": [g.strip() for g in groups.split(",") if g.strip()],
        "headers": headers,
        "authorization_bytes": len(authorization.encode("utf-8", "surrogateescape")),
        "claims": _bearer_claims(authorization),
    }


def _masked(name: str, value: str) -> str:
    """Token-carrying headers (X-Forwarded-Access-Token) are summarised, never displayed."""
    if any(marker in name.lower() for marker in _SECRET_MARKERS):
        return f"({len(value)} characters, hidden)"
    return value


def _bearer_claims(authorization: str) -> dict[str, Any] | None:
    """The JWT payload of a bearer token, base64-decoded only: no signature check."""
    scheme, _, credentials = authorization.partition(" ")
    parts = credentials.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#15171a}
header,footer{background:#1e3a5f;color:#fff;padding:.75rem 1.5rem}
footer{background:none;color:#444;font-size:.9rem}
main{max-width:60rem;margin:0 auto;padding:1rem 1.5rem}
section{background:#fff;border-radius:8px;padding:1rem 1.5rem;margin:1rem 0;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.3rem;margin:0}h2{font-size:1.1rem;margin-top:0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d6d9de;vertical-align:top}
td,code{font-family:ui-monospace,monospace;word-break:break-all}
.note{color:#4a4f57;font-size:.9rem}
input{padding:.4rem;border:1px solid #5f6670;border-radius:4px;font:inherit;width:60%}
button{padding:.4rem 1rem;background:#1d4ed8;color:#fff;border:0;border-radius:4px;font:inherit}
#ws-log{background:#f0f2f5;padding:.5rem;min-height:3rem;white-space:pre-wrap}
"""

_SCRIPT = """
(function () {
  var scheme = location.protocol === "https:" ? "wss:" : "ws:";
  var log = document.getElementById("ws-log");
  var form = document.getElementById("ws-form");
  var input = document.getElementById("ws-input");
  var socket = new WebSocket(scheme + "//" + location.host + "/demo-ws");
  function note(text) { log.textContent += text + "\\n"; }
  socket.onopen = function () { note("connected"); };
  socket.onclose = function () { note("closed"); };
  socket.onerror = function () { note("error"); };
  socket.onmessage = function (event) { note("echo: " + event.data); };
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (socket.readyState === WebSocket.OPEN && input.value) {
      socket.send(input.value);
      note("sent: " + input.value);
      input.value = "";
    }
  });
})();
"""


def _rows(items: dict[str, Any]) -> str:
    if not items:
        return '<tr><td colspan="2">none</td></tr>'
    cells = []
    for key, value in items.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        cells.append(f"<tr><th scope='row'>{escape(key)}</th><td>{escape(shown)}</td></tr>")
    return "".join(cells)


def _page(report: dict[str, Any]) -> str:
    person = {
        "User": report["user"] or "(not signed in)",
        "Email": report["email"],
        "Preferred username": report["preferred_username"],
        "Groups": ", ".join(report["groups"]),
    }
    claims = report["claims"]
    claim_table = (
        f"<table>{_rows(claims)}</table>"
        if claims is not None
        else "<p>No bearer JWT in the Authorization header.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>whoami \u2014 oidcproxy demo</title><style>{_STYLE}</style></head>
<body><header><h1>whoami \u2014 oidcproxy demo upstream</h1></header>
<main>
<section aria-labelledby="who"><h2 id="who">Signed in as</h2><table>{_rows(person)}</table></section>
<section aria-labelledby="hdrs"><h2 id="hdrs">Identity headers received</h2>
<table><thead><tr><th scope="col">Header</th><th scope="col">Value</th></tr></thead>
<tbody>{_rows(report["headers"])}</tbody></table></section>
<section aria-labelledby="claims"><h2 id="claims">Bearer token claims</h2>
<p class="note">As received, not verified by this demo.</p>{claim_table}</section>
<section aria-labelledby="req"><h2 id="req">Request</h2><table>{
        _rows({"Path": report["path"], "Authorization header": f"{report['authorization_bytes']} bytes"})
    }</table></section>
<section aria-labelledby="ws"><h2 id="ws">WebSocket echo</h2>
<form id="ws-form"><label for="ws-input">Message</label>
<input id="ws-input" autocomplete="off"> <button type="submit">Send</button></form>
<div id="ws-log" role="log" aria-live="polite"></div></section>
</main>
<footer>Demo upstream served by oidcproxy --dev.</footer>
<script>{_SCRIPT}</script></body></html>
"""
