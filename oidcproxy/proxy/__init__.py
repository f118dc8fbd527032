"""The reverse proxy: which upstream serves a path, what it is sent, and the bytes both ways.

    headers     pure header policy: what goes upstream, what /oauth2/auth answers, owned headers
    routes      pure: path prefix -> upstream origin, origin-form targets only
    http        UpstreamProxy: streams a request and its answer, owns the connection pools
    websocket   the WebSocket relay: handshake, then raw bytes both ways, the session/idle watchdog
    frames      pure: the RFC 6455 bits the relay needs (accept value, close frames, frame boundaries)
    client      our HTTP/1.1 client (keep-alive pool per origin; upgrade handshakes)
    connection  one upstream connection and the response it carries (llhttp)
    tls         the one SSLContext for https/wss upstreams (CA files, client certificate, skip-verify)

Decides nothing about who may pass: the gate in `web` did. Imports config, errors and model.
"""

from __future__ import annotations

from oidcproxy.proxy.client import UpstreamClient
from oidcproxy.proxy.connection import UpstreamResponse
from oidcproxy.proxy.headers import (
    HOP_BY_HOP,
    OWNED_HEADERS,
    Bearer,
    HeaderCaches,
    HeaderPolicy,
    auth_request_headers,
    is_websocket_upgrade,
    owned_header,
    strip_cookies,
    upstream_headers,
)
from oidcproxy.proxy.http import UPSTREAM, ProxyObserver, UpstreamProxy, View
from oidcproxy.proxy.routes import Route, Router, upstream_url
from oidcproxy.proxy.tls import UpstreamTls
from oidcproxy.proxy.websocket import WebSocketTimeouts

__all__ = [
    "HOP_BY_HOP",
    "OWNED_HEADERS",
    "UPSTREAM",
    "Bearer",
    "HeaderCaches",
    "HeaderPolicy",
    "Route",
    "Router",
    "UpstreamClient",
    "ProxyObserver",
    "UpstreamProxy",
    "UpstreamResponse",
    "UpstreamTls",
    "View",
    "WebSocketTimeouts",
    "auth_request_headers",
    "is_websocket_upgrade",
    "owned_header",
    "strip_cookies",
    "upstream_headers",
    "upstream_url",
]
