"""build_app(settings) -> web.Application: the runtime state built once from the settings, the routes,
and every resource owned through cleanup_ctx. `serve.run` serves it. The one module that knows every
part: it builds the sessions, coordination, oidc, proxy and idp objects and names them in `appkeys`;
what is opened at start-up and closed at shutdown is built in its cleanup contexts (`web.contexts`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
from collections.abc import Callable, Mapping

from aiohttp import web

from oidcproxy.authz import Policy
from oidcproxy.config import ProviderSpec, Settings, split_address
from oidcproxy.coordination import LocalState, Revocations, SharedState, SocketState
from oidcproxy.coordination.redis import RedisState
from oidcproxy.forwarded import Edge
from oidcproxy.idp import IdPClient, IdPConfig
from oidcproxy.idp import build_app as build_idp_app
from oidcproxy.login import LoginFlow
from oidcproxy.model import Clock, system_clock
from oidcproxy.oidc import ClaimMapping, Endpoints, ProviderConfig, entra_issuers, parse_pairs
from oidcproxy.redisconn import RedisConfig, connect
from oidcproxy.sessions import CookieSessionStore, SessionCodec, SessionStore
from oidcproxy.sessions.cookies import CookiePolicy
from oidcproxy.sessions.hybrid import HybridSessionStore
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.redis import RedisSessionStore
from oidcproxy.web import handlers, signin, signout
from oidcproxy.web.appkeys import (
    CLAIMS,
    CLOCK,
    DRAINING,
    EDGE,
    EMBEDDED_IDP,
    LOGIN,
    METRICS,
    PAGES,
    POLICIES,
    POLICY,
    PROXY,
    REDIS,
    REVOKED,
    SESSIONS,
    SETTINGS,
    SHARED,
    STARTED,
)
from oidcproxy.web.contexts import MAX_FIELD_SIZE, metrics_ctx, oidc_ctx, redis_ctx, shared_ctx, upstream_ctx
from oidcproxy.web.headerlimit import answer_431, header_limits
from oidcproxy.web.metrics import Metrics, observe_requests
from oidcproxy.web.middleware import errors_and_ids, remember_started
from oidcproxy.web.pages import PageCache

__all__ = ["MAX_FIELD_SIZE", "base_url", "build_app", "redis_config"]

log = logging.getLogger("oidcproxy")


def build_app(
    settings: Settings,
    clock: Clock = system_clock,
    *,
    state_socket: str | None = None,
    shared_state: SharedState | None = None,
) -> web.Application:
    """The app; `state_socket` is the keeper's path when this is one of several workers;
    `shared_state` (say a RedisState) replaces both, shared with other replicas; the app closes it."""
    specs = settings.providers()
    metrics = Metrics(
        enabled=bool(settings.metrics_address), routes=_ROUTE_CLASSES, providers=[s.id for s in specs]
    )
    app = web.Application(
        middlewares=[observe_requests(metrics, STARTED), errors_and_ids]
        if metrics.enabled
        else [errors_and_ids],
        handler_args=header_limits(settings.max_header_size),
        client_max_size=1024**2,
    )
    app[METRICS] = metrics
    keys = KeyRing(settings.cookie_secrets())
    cookie_policy = CookiePolicy(
        name=settings.cookie_name,
        domain=settings.cookie_domain,
        path=settings.cookie_path,
        secure=settings.cookie_secure,
        samesite=settings.cookie_samesite,
        max_age=int(settings.cookie_expire),
    )
    app[SETTINGS] = settings
    app[DRAINING] = asyncio.Event()
    app[CLOCK] = clock
    app[PAGES] = PageCache()
    app[SESSIONS] = _session_store(app, settings, keys, cookie_policy, clock)
    shared = app[SHARED] = shared_state or _shared_state(app, settings, clock, state_socket)
    # Entries live as long as the longest session they could refuse.
    app[REVOKED] = Revocations(shared, clock, lifetime_s=settings.cookie_expire)
    app[LOGIN] = LoginFlow(
        keys.login_secrets(),
        cookie_policy,
        clock,
        shared=shared,
        pkce=settings.code_challenge_method == "S256",
    )
    emails = settings.allowed_emails()
    app[POLICIES] = {
        spec.id: Policy.build(
            spec.email_domain, emails, settings.insecure_allow_unverified_email, spec.allowed_group
        )
        for spec in specs
    }
    app[POLICY] = app[POLICIES][specs[0].id]
    app[EDGE] = _edge(settings)
    answer_431(app, settings.max_header_size)
    configs = [_provider_config(settings, spec) for spec in specs]
    if settings.oidc_type == "embedded":
        configs = [_mount_embedded_idp(app, settings, configs[0], clock)]
    claims = [_claim_mapping(spec, config.issuer) for spec, config in zip(specs, configs, strict=True)]
    app[CLAIMS] = claims[0]
    app.on_response_prepare.append(handlers.stashed_cookies)
    app.on_response_prepare.append(remember_started)
    app.on_response_prepare.append(_close_when_draining)
    app.on_shutdown.append(_websockets_going_away)
    app.cleanup_ctx.append(shared_ctx)
    seal = SessionCodec(keys, cookie_policy.name)
    plan = [(spec.id, spec.button, c, m) for spec, c, m in zip(specs, configs, claims, strict=True)]
    app.cleanup_ctx.append(functools.partial(oidc_ctx, plan=plan, seal=seal))
    app.cleanup_ctx.append(upstream_ctx)
    if metrics.enabled:
        app.cleanup_ctx.append(metrics_ctx)
    _routes(app)
    return app


def _session_store(
    app: web.Application, settings: Settings, keys: KeyRing, policy: CookiePolicy, clock: Clock
) -> SessionStore:
    """The cookie store; with Redis configured, the hybrid (all to Redis with --session-store-type=redis,
    else only sessions over --cookie-max-chunks cookies: the autopilot)."""
    cookies = CookieSessionStore(keys, policy, clock, max_chunks=settings.cookie_max_chunks)
    if not settings.redis_configured():
        return cookies
    client = app[REDIS] = connect(redis_config(settings))
    app.cleanup_ctx.append(redis_ctx)
    tickets = RedisSessionStore(
        client, keys, policy, clock, cache_ttl_s=settings.session_cache_ttl, timeout_s=settings.redis_timeout
    )
    max_chunks = 0 if settings.session_store_type == "redis" else settings.cookie_max_chunks
    return HybridSessionStore(cookies, tickets, max_chunks)


def _shared_state(
    app: web.Application, settings: Settings, clock: Clock, state_socket: str | None
) -> SharedState:
    """With Redis configured, refresh and login state live there, shared by every replica (one client
    for sessions and state); else in this process, or in the keeper for several workers."""
    if REDIS in app:
        return RedisState(app[REDIS], timeout_s=settings.redis_timeout)
    return LocalState(clock) if state_socket is None else SocketState(state_socket)


def redis_config(settings: Settings) -> RedisConfig:
    return RedisConfig(
        url=settings.redis_connection_url,
        username=settings.redis_username,
        password=settings.redis_password_value(),
        sentinel_master=settings.redis_sentinel_master_name if settings.redis_use_sentinel else "",
        sentinel_urls=tuple(settings.redis_sentinel_connection_urls),
        sentinel_password=settings.redis_sentinel_password.get_secret_value(),
        cluster_urls=tuple(settings.redis_cluster_connection_urls) if settings.redis_use_cluster else (),
        ca_path=settings.redis_ca_path,
        insecure_skip_verify=settings.redis_insecure_skip_tls_verify,
        idle_check_s=settings.redis_connection_idle_timeout,
        timeout_s=settings.redis_timeout,
    )


async def _close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: while draining, each answer closes its connection, so a keep-alive client
    opens its next one where the ingress now sends it (RFC 9112 9.6)."""
    draining = request.config_dict.get(DRAINING)  # request.app is /dev-idp's for its pages
    if draining is not None and draining.is_set():
        response.force_close()


async def _websockets_going_away(app: web.Application) -> None:
    """on_shutdown (the listener has closed): open WebSockets get 1001 instead of being cut at the end
    of the grace period."""
    if PROXY in app:
        count = app[PROXY].going_away()
        if count:
            log.info("closing %d websocket(s) with 1001: shutting down", count)


def _edge(settings: Settings) -> Edge:
    return Edge.build(
        reverse_proxy=settings.reverse_proxy,
        trusted_proxy_ip=settings.trusted_proxy_ip,
        whitelist_domain=settings.whitelist_domain,
        own_urls=[settings.redirect_url, *(p.redirect_url for p in settings.providers())],
        skip_auth_route=settings.skip_auth_route,
        skip_auth_preflight=settings.skip_auth_preflight,
        api_route=settings.api_route,
    )


def _provider_config(settings: Settings, spec: ProviderSpec) -> ProviderConfig:
    """One provider's client configuration: the spec's own options, the limits shared by all."""
    endpoints = None
    if spec.skip_oidc_discovery:
        endpoints = Endpoints(spec.login_url, spec.redeem_url, spec.oidc_jwks_url, spec.profile_url)
    tenant = spec.entra_tenant
    return ProviderConfig(
        issuer=spec.oidc_issuer_url,
        client_id=spec.client_id,
        client_secret=spec.client_secret_value(),
        scope=spec.scope,
        extra_audiences=tuple(spec.oidc_extra_audience),
        validator_issuer=spec.oidc_validator_issuer_url,
        validator_client_id=spec.oidc_validator_client_id,
        use_access_token=spec.oidc_use_access_token,
        endpoints=endpoints,
        auth_extra_params=parse_pairs(spec.auth_extra_param),
        jwks_min_refetch_s=settings.oidc_jwks_min_refetch,
        jwks_stale_if_error_s=settings.oidc_jwks_stale_if_error,
        max_response_bytes=settings.provider_max_response_size,
        profile_claims=(spec.oidc_email_claim, spec.oidc_groups_claim),
        also_issuers=entra_issuers(tenant)[1:] if tenant else (),
        redirect_url=spec.redirect_url,
    )


def _claim_mapping(spec: ProviderSpec, issuer: str) -> ClaimMapping:
    return ClaimMapping(
        email_claim=spec.oidc_email_claim,
        groups_claim=spec.oidc_groups_claim,
        username_claim=spec.oidc_username_claim,
        username_prefix=spec.oidc_username_prefix,
        username_prefix_policy=spec.oidc_username_prefix_policy,
        groups_prefix=spec.oidc_groups_prefix,
        issuer=issuer,
        required=parse_pairs(spec.oidc_required_claim),
    )


def base_url(settings: Settings) -> str:
    """Where a browser on this machine reaches the proxy: --redirect-url's origin, else the address."""
    if settings.redirect_url:
        return settings.redirect_url.rsplit("/oauth2/", 1)[0]
    host, port = split_address(settings.http_address)
    if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _mount_embedded_idp(
    app: web.Application, settings: Settings, provider: ProviderConfig, clock: Clock
) -> ProviderConfig:
    """--oidc-type embedded: the development provider under /dev-idp, our client registered with it."""
    issuer = base_url(settings) + "/dev-idp"
    client = IdPClient(
        client_id=provider.client_id or "oidcproxy-dev",
        client_secret=provider.client_secret or secrets.token_urlsafe(32),
        redirect_uris=(settings.redirect_url or base_url(settings) + "/oauth2/callback",),
        post_logout_redirect_uris=(base_url(settings) + signout.SIGNED_OUT_PATH,),
        backchannel_logout_uri=base_url(settings) + "/oauth2/backchannel-logout",
        allow_loopback_redirects=True,
    )
    idp_app, idp = build_idp_app(
        IdPConfig(issuer=issuer, clients=(client,), signing_alg=settings.dev_idp_signing_alg, clock=clock)
    )
    app.add_subapp("/dev-idp", idp_app)
    app[EMBEDDED_IDP] = idp
    return dataclasses.replace(
        provider, issuer=issuer, client_id=client.client_id, client_secret=client.client_secret
    )


_ROUTE_CLASSES: Mapping[Callable[..., object], str] = {
    handlers.gate: "proxied",
    handlers.auth: "auth_request",
    signin.sign_in: "login",
    signin.start: "login",
    signin.callback: "callback",
    signout.sign_out: "sign_out",
    handlers.userinfo: "userinfo",
}
"""Each route's class in the request metrics (web.metrics.ROUTES); any other route is `static`."""


def _routes(app: web.Application) -> None:
    app.router.add_get("/oauth2/sign_in", signin.sign_in)
    app.router.add_get("/oauth2/start", signin.start)
    app.router.add_get("/oauth2/callback", signin.callback)
    app.router.add_get("/oauth2/callback/{provider}", signin.callback)
    app.router.add_route("*", "/oauth2/sign_out", signout.sign_out)
    app.router.add_get(signout.SIGNED_OUT_PATH, signout.signed_out)
    app.router.add_post("/oauth2/backchannel-logout", signout.backchannel_logout)
    app.router.add_get("/oauth2/userinfo", handlers.userinfo)
    # Any method: NGINX's auth_request and Envoy's ext_authz ask with the original request's method.
    app.router.add_route("*", "/oauth2/auth", handlers.auth)
    app.router.add_route("*", "/oauth2/auth/{tail:.*}", handlers.auth)  # Envoy: path_prefix + path
    app.router.add_get("/ping", handlers.ping)
    app.router.add_get("/ready", handlers.ready)
    app.router.add_route("*", "/{tail:.*}", handlers.gate)
