"""The proxy's external URL as the client sees it. Pure.

Client-sent X-Forwarded-* headers are not trusted yet: the scheme and host are what this server saw.
"""

from __future__ import annotations

__all__ = ["callback_url", "external_base"]


def external_base(scheme: str, host: str) -> str:
    return f"{scheme}://{host}"


def callback_url(configured: str, scheme: str, host: str) -> str:
    """--redirect-url when set, else /oauth2/callback on the host the request came to."""
    return configured or external_base(scheme, host) + "/oauth2/callback"
