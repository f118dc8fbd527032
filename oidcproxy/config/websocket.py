"""Options of proxied WebSockets: handshake time, idle time, and how often an open one checks its session.

One concern of the flat Settings (settings.py), checking its own fields in `problems()`.
Imports only config.values.
"""

from __future__ import annotations

from pydantic import BaseModel

from oidcproxy.config.values import Duration, option

__all__ = ["WebSocketOptions"]


class WebSocketOptions(BaseModel):
    """Proxied WebSockets."""

    websocket_handshake_timeout: Duration = option("10s", "time for the upstream's WebSocket handshake")
    websocket_idle_timeout: Duration = option("0s", "close a WebSocket silent this long both ways; 0: never")
    websocket_session_check: Duration = option(
        "15s", "how often an open WebSocket checks its session; closed with 1008 once it expired"
    )

    def problems(self) -> list[str]:
        if self.websocket_handshake_timeout <= 0 or self.websocket_session_check <= 0:
            return ["--websocket-handshake-timeout, --websocket-session-check: must be positive"]
        return []
