"""Every web.AppKey: the only place shared application state is named and typed. Imports the parts
whose objects the app holds (sessions, coordination, oidc, proxy, the pure decisions, config)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from oidcproxy.authz import Policy
from oidcproxy.config import Settings
from oidcproxy.coordination import Revocations, SharedState
from oidcproxy.forwarded import Edge
from oidcproxy.idp import DevIdP
from oidcproxy.login import LoginFlow
from oidcproxy.model import Clock, Identity
from oidcproxy.oidc import BearerVerifier, ClaimMapping, OIDCClient, Providers, Refresher, SignOut
from oidcproxy.proxy import UPSTREAM, UpstreamProxy
from oidcproxy.redisconn import RedisClient
from oidcproxy.sessions.cookies import SetCookie
from oidcproxy.sessions.store import SessionStore
from oidcproxy.web.metrics import Metrics
from oidcproxy.web.pages import PageCache

__all__ = [
    "BEARER",
    "CLAIMS",
    "CLOCK",
    "DRAINING",
    "EDGE",
    "EMBEDDED_IDP",
    "IDENTITY",
    "LOGIN",
    "METRICS",
    "OIDC",
    "PAGES",
    "POLICIES",
    "POLICY",
    "PROVIDERS",
    "PROXY",
    "REDIS",
    "REFRESHER",
    "REQUEST_ID",
    "REVOKED",
    "SESSIONS",
    "SETTINGS",
    "SHARED",
    "SIGN_OUT",
    "SIGN_OUTS",
    "SET_COOKIES",
    "STARTED",
    "UPSTREAM",
]

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions")
LOGIN = web.AppKey("login", LoginFlow)
OIDC = web.AppKey("oidc", OIDCClient)  # the first provider's client (PROVIDERS has them all)
CLAIMS = web.AppKey("claims", ClaimMapping)  # the first provider's claim mapping
POLICY = web.AppKey("policy", Policy)  # the first provider's rules (POLICIES has them all)
# The configured providers by id (oidc.providers), and each one's rules: a session passes only its own.
PROVIDERS = web.AppKey("providers", Providers)
POLICIES: web.AppKey[dict[str, Policy]] = web.AppKey("policies")
PROXY = web.AppKey("proxy", UpstreamProxy)
REFRESHER = web.AppKey("refresher", Refresher)
BEARER = web.AppKey("bearer", BearerVerifier)  # only with --skip-jwt-bearer-tokens
EDGE = web.AppKey("edge", Edge)
PAGES = web.AppKey("pages", PageCache)  # the look of the pages, read once
# The one Redis client (sessions and shared state), only when Redis is configured; closed on cleanup.
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
METRICS = web.AppKey("metrics", Metrics)  # recorders that do nothing without --metrics-address
# Refresh and login state shared by the workers of this instance (refresh path and callback only).
SHARED: web.AppKey[SharedState] = web.AppKey("shared")
# The revocation list's local copy (checked on every request) and the provider side of sign-out.
REVOKED = web.AppKey("revoked", Revocations)
SIGN_OUT = web.AppKey("sign_out", SignOut)  # the first provider's (SIGN_OUTS has each provider's)
SIGN_OUTS: web.AppKey[dict[str, SignOut]] = web.AppKey("sign_outs")
EMBEDDED_IDP = web.AppKey("embedded_idp", DevIdP)  # only with --oidc-type embedded
# Set on SIGTERM (serve.drain): /ready answers 503 from then on, so the ingress stops sending new requests.
DRAINING = web.AppKey("draining", asyncio.Event)

REQUEST_ID = web.RequestKey("request_id", str)
# Who the request was let through as (the session's or the bearer token's), for the logs.
IDENTITY = web.RequestKey("identity", Identity)
# Cookies for whatever response this request ends with (a refreshed or ended session), set when it
# is prepared: the proxied response streams, so the handler cannot add them afterwards.
SET_COOKIES: web.RequestKey[list[SetCookie]] = web.RequestKey("set_cookies")
# The response whose status line is on its way (set when it is prepared): after that, an error can
# only cut the connection, never answer with a response of its own.
STARTED = web.RequestKey("started", web.StreamResponse)
