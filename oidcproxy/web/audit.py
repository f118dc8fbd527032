"""Audit events: who signed in, failed, left, was refused or lost a session, and why. One line each.

`audit(event, request, **fields)` logs on `oidcproxy.audit` with a stable `event` (the names in
EVENTS), the request id, the client, and whatever the caller knows (`user`, `email`, `reason`, ...).
In JSON they are keys of the line; in text they follow the message as `k=v`. Like every log record
it is written by the logging thread, off the event loop (serve.log_off_the_loop). `reason` is a
ProxyError's detail: never a token, a code or a cookie. Imports appkeys and model.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from aiohttp import web

from oidcproxy.model import Identity
from oidcproxy.web.appkeys import EDGE, IDENTITY, REQUEST_ID

__all__ = ["EVENTS", "Event", "audit", "client_of"]

log = logging.getLogger("oidcproxy.audit")

Event = Literal[
    "sign_in",
    "sign_in_failed",
    "sign_out",
    "denied",
    "refresh_failed",
    "session_revoked",
    "bearer_refused",
]
EVENTS: dict[str, str] = {
    "sign_in": "signed in",
    "sign_in_failed": "sign-in failed",
    "sign_out": "signed out",
    "denied": "access denied",
    "refresh_failed": "session ended: refresh failed",
    "session_revoked": "session revoked",
    "bearer_refused": "bearer token refused",
}
"""Each event and the message its line carries; the names are stable (operators alert on them)."""


def audit(event: Event, request: web.Request | None = None, **fields: Any) -> None:
    """Log one audit event. `request` (when there is one) gives the request id, the client, the
    method and path, and the signed-in identity unless `identity=` names another. `session_revoked`
    from a back-channel logout passes the request of the provider's call and the revoked `sub`/`sid`."""
    identity: Identity | None = fields.pop("identity", None)
    out: dict[str, Any] = {"event": event}
    if request is not None:
        identity = identity or request.get(IDENTITY)
        out["request_id"] = request.get(REQUEST_ID, "")
        out["method"], out["path"] = request.method, request.path
        out["client"] = client_of(request)
    if identity is not None:
        out["user"], out["email"], out["sub"] = identity.user, identity.email, identity.subject
    out.update((k, v) for k, v in fields.items() if v is not None and v != "")
    log.info(EVENTS[event], extra={"fields": out})


def client_of(request: web.BaseRequest) -> str:
    """The client's address: the forwarded one when the peer is a trusted proxy, else the peer."""
    peer = request.remote or ""
    edge = request.app.get(EDGE) if isinstance(request, web.Request) else None
    if edge is None or not edge.trusts(peer):
        return peer
    return edge.external(request.headers, peer=peer, scheme=request.scheme, host=request.host).client
