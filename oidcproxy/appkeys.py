"""Every web.AppKey: the only place shared application state is named and typed."""

from __future__ import annotations

from aiohttp import web

from oidcproxy.authz import Policy
from oidcproxy.config import Settings
from oidcproxy.forwarded import Edge
from oidcproxy.login import LoginFlow
from oidcproxy.model import Clock
from oidcproxy.oidc import ClaimMapping, OIDCClient
from oidcproxy.session import CookieSessionStore
from oidcproxy.upstream import UpstreamProxy

__all__ = [
    "CLAIMS",
    "CLOCK",
    "EDGE",
    "LOGIN",
    "OIDC",
    "POLICY",
    "PROXY",
    "REQUEST_ID",
    "SESSIONS",
    "SETTINGS",
]

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
SESSIONS = web.AppKey("sessions", CookieSessionStore)
LOGIN = web.AppKey("login", LoginFlow)
OIDC = web.AppKey("oidc", OIDCClient)
CLAIMS = web.AppKey("claims", ClaimMapping)
POLICY = web.AppKey("policy", Policy)
PROXY = web.AppKey("proxy", UpstreamProxy)
EDGE = web.AppKey("edge", Edge)

REQUEST_ID = web.RequestKey("request_id", str)
