"""The cleanup contexts `web.app` hands the app: the resources it owns from start-up to shutdown, each
built after any fork and closed in reverse: the Redis client (built with the store, closed last), the
providers' HTTP session with every object that uses it (registry, refresher, bearer verifier,
sign-outs), the metrics' mirror of counters the parts own, the revocation list's poller and the shared
state, and the upstream proxy (with the builtin:whoami demo). Imports the domain parts, appkeys,
metrics and demo; never app, handlers or middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from aiohttp import web

from oidcproxy.config import Settings
from oidcproxy.forwarded import Edge
from oidcproxy.oidc import (
    BearerVerifier,
    ClaimMapping,
    OIDCClient,
    Provider,
    ProviderConfig,
    Providers,
    Refresher,
    RefreshPolicy,
    SignOut,
    parse_pairs,
    ssl_context,
)
from oidcproxy.proxy import Bearer, HeaderPolicy, Route, Router, UpstreamProxy, UpstreamTls, WebSocketTimeouts
from oidcproxy.redisconn import RedisClient
from oidcproxy.sessions import SessionCodec
from oidcproxy.web.appkeys import (
    BEARER,
    CLOCK,
    EDGE,
    METRICS,
    OIDC,
    PROVIDERS,
    PROXY,
    REDIS,
    REFRESHER,
    REQUEST_ID,
    REVOKED,
    SESSIONS,
    SETTINGS,
    SHARED,
    SIGN_OUT,
    SIGN_OUTS,
)
from oidcproxy.web.demo import build_demo_app
from oidcproxy.web.metrics import Metrics, provider_trace

__all__ = ["MAX_FIELD_SIZE", "metrics_ctx", "oidc_ctx", "redis_ctx", "shared_ctx", "upstream_ctx"]

log = logging.getLogger("oidcproxy")

MAX_FIELD_SIZE = 65536


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis client is built with the store (no connection yet) and closed last."""
    yield
    await app[SESSIONS].close()
    await _close_redis(app[REDIS])


async def _close_redis(client: RedisClient) -> None:
    await client.aclose()


def _view(edge: Edge, request: web.Request) -> tuple[str, str, str, str]:
    """What the upstream is told about the request: the browser's scheme and host, the client chain,
    the request id."""
    peer = request.remote or ""
    ext = edge.external(request.headers, peer=peer, scheme=request.scheme, host=request.host)
    chain = request.headers.get("X-Forwarded-For", "") if ext.trusted else ""
    return ext.scheme, ext.host, f"{chain}, {peer}" if chain else peer, request.get(REQUEST_ID, "")


async def oidc_ctx(
    app: web.Application, *, plan: list[tuple[str, str, ProviderConfig, ClaimMapping]], seal: SessionCodec
) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    connector = aiohttp.TCPConnector(ssl=ssl_context(settings.provider_ca_file))
    traces = [provider_trace(app[METRICS], _provider_endpoints(app))] if app[METRICS].enabled else []
    async with aiohttp.ClientSession(
        timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), connector=connector, trace_configs=traces
    ) as http:
        providers = app[PROVIDERS] = Providers(
            [
                Provider(pid, name, OIDCClient(http, config, app[CLOCK]), claims)
                for pid, name, config, claims in plan
            ]
        )
        app[OIDC] = providers.first.client
        for provider in providers:
            _mirror_key_set(app[METRICS], provider)
        # A refresh may fetch keys and userinfo too: the lock outlives a slow but successful one.
        lock_s = 3 * settings.provider_timeout + 5
        policy = RefreshPolicy(cookie_refresh_s=settings.cookie_refresh, lock_s=lock_s)
        app[REFRESHER] = Refresher(providers, policy, app[CLOCK], shared=app[SHARED], seal=seal)
        if settings.skip_jwt_bearer_tokens:
            extra = parse_pairs(settings.extra_jwt_issuers)
            app[BEARER] = BearerVerifier(http, providers, extra, app[CLOCK])
        app[SIGN_OUTS] = {
            p.id: SignOut(
                p.client, http, app[SHARED], app[CLOCK], backend_logout_url=settings.backend_logout_url
            )
            for p in providers
        }
        app[SIGN_OUT] = app[SIGN_OUTS][providers.first.id]
        yield
        for sign_out in app[SIGN_OUTS].values():
            await sign_out.close()
        await app[REFRESHER].close()
        if BEARER in app:
            await app[BEARER].close()
        for provider in providers:
            await provider.client.close()


def _provider_endpoints(app: web.Application) -> Callable[[], Mapping[str, tuple[str, str]]]:
    """Each provider's endpoint URLs: (provider id, endpoint name), for the provider metrics. The
    discovery URL is known from the start; the rest once that provider's metadata is loaded."""
    known: dict[str, tuple[str, str]] = {}
    waiting: list[Provider] = []

    def endpoints() -> Mapping[str, tuple[str, str]]:
        if not known and PROVIDERS in app:  # the first call after the registry was built
            registry: Providers = app[PROVIDERS]
            waiting.extend(registry)
            for p in waiting:
                url = p.client.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                known[url] = (p.id, "discovery")
        for p in list(waiting):
            meta = p.client.loaded
            if meta is None:
                continue
            waiting.remove(p)
            names = {"jwks": meta.jwks_uri, "userinfo": meta.userinfo_endpoint, "token": meta.token_endpoint}
            known.update({url: (p.id, name) for name, url in names.items() if url})
        return known

    return endpoints


def _mirror_key_set(metrics: Metrics, provider: Provider) -> None:
    """A provider's key set's own counters (oidc.jwks.KeySet) copied into the metrics."""
    client = provider.client

    def read(name: str) -> Callable[[], int]:
        return lambda: getattr(client.keys, name) if client.keys is not None else 0

    metrics.mirror(metrics.jwks_fetches[provider.id]["ok"], read("fetches"))
    metrics.mirror(metrics.jwks_fetches[provider.id]["failed"], read("failures"))
    metrics.mirror(metrics.jwks_stale[provider.id], read("stale_served"))


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Mirrored counters are copied every few seconds (and before each scrape with one worker)."""
    metrics = app[METRICS]

    async def every(seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            metrics.sync()

    task = asyncio.create_task(every(_MIRROR_S), name="metrics-mirror")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    metrics.sync()


_MIRROR_S = 5.0


async def shared_ctx(app: web.Application) -> AsyncIterator[None]:
    poller = asyncio.create_task(app[REVOKED].keep_fresh(), name="revocations-refresh")
    yield
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poller
    await app[SHARED].close()


def _upstream_tls(settings: Settings) -> ssl.SSLContext:
    """The one context for https/wss upstreams; skipping verification is said loudly, at start."""
    if settings.ssl_upstream_insecure_skip_verify:
        log.warning(
            "--ssl-upstream-insecure-skip-verify: https upstreams' certificates are NOT verified; "
            "anyone on the path to them can read and change the traffic, identity headers and tokens "
            "included. Trust their CA with --upstream-ca-file instead."
        )
    return UpstreamTls.of(
        settings.upstream_ca_file,
        settings.upstream_client_cert_file,
        settings.upstream_client_key_file,
        settings.ssl_upstream_insecure_skip_verify,
    ).context()


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    routes = [Route.parse(url) for url in settings.upstream if not url.startswith("builtin:")]
    demo: web.AppRunner | None = None
    if "builtin:whoami" in settings.upstream:
        demo = web.AppRunner(build_demo_app(), access_log=None)
        await demo.setup()
        site = web.TCPSite(demo, "127.0.0.1", 0)
        await site.start()
        port = demo.addresses[0][1]
        routes.append(Route.parse(f"http://127.0.0.1:{port}/"))
    proxy = UpstreamProxy(
        Router(routes),
        HeaderPolicy(
            cookie_name=settings.cookie_name,
            pass_user_headers=settings.pass_user_headers,
            pass_access_token=settings.pass_access_token,
            bearer=Bearer.choose(settings),
            pass_host_header=settings.pass_host_header,
        ),
        response_timeout_s=settings.upstream_timeout,
        max_field_size=max(MAX_FIELD_SIZE, settings.max_header_size),
        view=functools.partial(_view, app[EDGE]),
        websocket=WebSocketTimeouts(
            handshake_s=settings.websocket_handshake_timeout,
            idle_s=settings.websocket_idle_timeout,
            session_check_s=settings.websocket_session_check,
        ),
        clock=app[CLOCK],
        tls=_upstream_tls(settings),
        observer=app[METRICS] if app[METRICS].enabled else None,
    )
    await proxy.start()
    app[PROXY] = proxy
    yield
    await proxy.close()
    if demo is not None:
        await demo.cleanup()
