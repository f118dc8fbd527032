"""build_app(settings) -> web.Application: the runtime state built once from the settings, the routes,
and every resource owned through cleanup_ctx. run() serves it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web, web_protocol
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_request import BaseRequest

from oidcproxy import handlers, workers
from oidcproxy.accesslog import BatchedAccessLogger, flush_all
from oidcproxy.appkeys import (
    BEARER,
    CLAIMS,
    CLOCK,
    EDGE,
    LOGIN,
    OIDC,
    POLICY,
    PROXY,
    REFRESHER,
    SESSIONS,
    SETTINGS,
    SHARED,
)
from oidcproxy.authz import Policy
from oidcproxy.config import Settings, cookie_key_material, split_address
from oidcproxy.cookies import CookiePolicy
from oidcproxy.crypto import KeyRing
from oidcproxy.demo import build_demo_app
from oidcproxy.errors import HeadersTooLarge
from oidcproxy.forwarded import Edge
from oidcproxy.idp import IdPClient, IdPConfig, warning_text
from oidcproxy.idp import build_app as build_idp_app
from oidcproxy.login import LoginFlow
from oidcproxy.middleware import error_response, errors_and_ids, load_pages, remember_started
from oidcproxy.model import Clock, system_clock
from oidcproxy.oidc import (
    BearerVerifier,
    ClaimMapping,
    Endpoints,
    OIDCClient,
    ProviderConfig,
    Refresher,
    RefreshPolicy,
    parse_pairs,
    ssl_context,
)
from oidcproxy.pages import Pages
from oidcproxy.session import CookieSessionStore, SessionCodec
from oidcproxy.sharedstate import (
    LocalState,
    SocketState,
    keeper_socket,
    remove_keeper_socket,
    serve_keeper,
)
from oidcproxy.upstream import Bearer, HeaderPolicy, Route, Router, UpstreamProxy, WebSocketTimeouts

__all__ = ["MAX_FIELD_SIZE", "base_url", "build_app", "run"]

log = logging.getLogger("oidcproxy")

MAX_FIELD_SIZE = 65536


def build_app(
    settings: Settings, clock: Clock = system_clock, *, state_socket: str | None = None
) -> web.Application:
    """The app; `state_socket` is the keeper's path when this is one of several workers."""
    app = web.Application(
        middlewares=[errors_and_ids],
        handler_args=_header_limits(settings.max_header_size),
        client_max_size=1024**2,
    )
    keys = KeyRing([cookie_key_material(settings.cookie_secret.get_secret_value())])
    cookie_policy = CookiePolicy(
        name=settings.cookie_name,
        domain=settings.cookie_domain,
        path=settings.cookie_path,
        secure=settings.cookie_secure,
        samesite=settings.cookie_samesite,
        max_age=int(settings.cookie_expire),
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[SESSIONS] = CookieSessionStore(keys, cookie_policy, clock)
    shared = app[SHARED] = LocalState(clock) if state_socket is None else SocketState(state_socket)
    app[LOGIN] = LoginFlow(
        keys.login_secrets(),
        cookie_policy,
        clock,
        shared=shared,
        pkce=settings.code_challenge_method == "S256",
    )
    app[POLICY] = Policy.build(
        settings.email_domain,
        settings.allowed_emails(),
        settings.insecure_allow_unverified_email,
        settings.allowed_group,
    )
    app[EDGE] = _edge(settings)
    _answer_431(app, settings.max_header_size)
    provider = _provider_config(settings)
    if settings.oidc_type == "embedded":
        provider = _mount_embedded_idp(app, settings, provider, clock)
    app[CLAIMS] = _claim_mapping(settings, provider.issuer)
    app.on_response_prepare.append(handlers.stashed_cookies)
    app.on_response_prepare.append(remember_started)
    app.cleanup_ctx.append(_shared_ctx)
    seal = SessionCodec(keys, cookie_policy.name)
    app.cleanup_ctx.append(functools.partial(_oidc_ctx, config=provider, seal=seal))
    app.cleanup_ctx.append(_upstream_ctx)
    _routes(app)
    return app


def _edge(settings: Settings) -> Edge:
    return Edge.build(
        reverse_proxy=settings.reverse_proxy,
        trusted_proxy_ip=settings.trusted_proxy_ip,
        whitelist_domain=settings.whitelist_domain,
        own_urls=[settings.redirect_url],
        skip_auth_route=settings.skip_auth_route,
        skip_auth_preflight=settings.skip_auth_preflight,
        api_route=settings.api_route,
    )


def _view(edge: Edge, request: web.Request) -> tuple[str, str, str]:
    """What the upstream is told about the request: the browser's scheme and host, the client chain."""
    peer = request.remote or ""
    ext = edge.external(request.headers, peer=peer, scheme=request.scheme, host=request.host)
    chain = request.headers.get("X-Forwarded-For", "") if ext.trusted else ""
    return ext.scheme, ext.host, f"{chain}, {peer}" if chain else peer


# -- 431 for oversized headers. aiohttp's parser refuses a header line over max_field_size before any
# handler or middleware runs, answering a bare 400 from RequestHandler.handle_error; the app's
# _make_handler is the one hook both web.run_app and test servers go through, so a Server that builds
# a RequestHandler answering 431 is installed there. The total size is checked once parsed.
def _header_limits(max_line: int) -> dict[str, Any]:
    return {"max_field_size": max_line, "max_line_size": max_line, "max_headers": 256}


class _HeaderLimitProtocol(web_protocol.RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        too_many = isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc)
        if not isinstance(exc, LineTooLong) and not too_many:
            return super().handle_error(request, status, exc, message)
        # Not str(exc): it quotes the start of the line, which may be a cookie or a bearer token.
        why = "too many header lines" if too_many else "a header line over --max-header-size"
        pages = getattr(self._manager, "pages", None)
        # The parser failed before any header was kept, so Accept is unknown: the page, which any
        # client can read (an oversized Cookie line from a browser is the commonest cause).
        return _too_large(request.remote or "", why, pages)


def _too_large(peer: str, why: str, pages: Pages | None) -> web.Response:
    """431 as the error page (`pages`) or as JSON (None), with a request id in the answer and the log."""
    rid = secrets.token_hex(8)
    log.warning(
        "431 to %s: request headers too large (%s); raise --max-header-size if legitimate [request_id=%s]",
        peer,
        why,
        rid,
    )
    public = (
        f"{HeadersTooLarge.public} A header line may be at most --max-header-size bytes, and all "
        "headers together twice that. Large sessions or bearer tokens are the usual cause."
    )
    response = error_response(HeadersTooLarge(why, public=public), rid, pages)
    response.headers["X-Request-Id"] = rid
    response.force_close()
    return response


class _HeaderLimitServer(web.Server):
    def __init__(self, *args: Any, total_limit: int, pages: Pages | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.request_handler
        self._total_limit = total_limit
        self.pages = pages

        async def checked(request: BaseRequest) -> web.StreamResponse:
            size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
            if size > self._total_limit:
                html = "text/html" in request.headers.get("Accept", "")
                why = f"{size} bytes of headers in all"
                return _too_large(request.remote or "", why, self.pages if html else None)
            expect = request.headers.get("Expect")
            if expect is not None and expect.lower() != "100-continue":
                # aiohttp's own 417 quotes the value, and a non-ASCII one made it a 500 (fuzzing found it).
                return web.Response(status=417, text="Only Expect: 100-continue is understood.")
            return await inner(request)

        self.request_handler = checked

    def __call__(self) -> web_protocol.RequestHandler:
        return _HeaderLimitProtocol(self, loop=self._loop, **self._kwargs)


def _answer_431(app: web.Application, max_line: int) -> None:
    loaded: list[Pages] = []  # the error page's look, read at startup (runners start before serving)

    async def load(app: web.Application) -> None:
        loaded.append(await load_pages(app[SETTINGS]))

    def make_handler(*, loop: Any = None, **kwargs: Any) -> web.Server:
        plain = original(loop=loop, **kwargs)
        return _HeaderLimitServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            total_limit=2 * max_line,
            pages=loaded[-1] if loaded else None,
            **plain._kwargs,
        )

    app.on_startup.append(load)

    original = app._make_handler
    setattr(app, "_make_handler", make_handler)  # noqa: B010 - instance hook, see above


def _provider_config(settings: Settings) -> ProviderConfig:
    endpoints = None
    if settings.skip_oidc_discovery:
        endpoints = Endpoints(
            settings.login_url, settings.redeem_url, settings.oidc_jwks_url, settings.profile_url
        )
    return ProviderConfig(
        issuer=settings.oidc_issuer_url,
        client_id=settings.client_id,
        client_secret=settings.client_secret_value(),
        scope=settings.scope,
        extra_audiences=tuple(settings.oidc_extra_audience),
        validator_issuer=settings.oidc_validator_issuer_url,
        validator_client_id=settings.oidc_validator_client_id,
        use_access_token=settings.oidc_use_access_token,
        endpoints=endpoints,
        auth_extra_params=parse_pairs(settings.auth_extra_param),
        jwks_min_refetch_s=settings.oidc_jwks_min_refetch,
        jwks_stale_if_error_s=settings.oidc_jwks_stale_if_error,
        max_response_bytes=settings.provider_max_response_size,
        profile_claims=(settings.oidc_email_claim, settings.oidc_groups_claim),
    )


def _claim_mapping(settings: Settings, issuer: str) -> ClaimMapping:
    return ClaimMapping(
        email_claim=settings.oidc_email_claim,
        groups_claim=settings.oidc_groups_claim,
        username_claim=settings.oidc_username_claim,
        username_prefix=settings.oidc_username_prefix,
        username_prefix_policy=settings.oidc_username_prefix_policy,
        groups_prefix=settings.oidc_groups_prefix,
        issuer=issuer,
        required=parse_pairs(settings.oidc_required_claim),
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
        post_logout_redirect_uris=(base_url(settings) + "/oauth2/sign_out",),
        allow_loopback_redirects=True,
    )
    idp_app, _ = build_idp_app(
        IdPConfig(issuer=issuer, clients=(client,), signing_alg=settings.dev_idp_signing_alg, clock=clock)
    )
    app.add_subapp("/dev-idp", idp_app)
    return dataclasses.replace(
        provider, issuer=issuer, client_id=client.client_id, client_secret=client.client_secret
    )


def _routes(app: web.Application) -> None:
    app.router.add_get("/oauth2/sign_in", handlers.sign_in)
    app.router.add_get("/oauth2/start", handlers.start)
    app.router.add_get("/oauth2/callback", handlers.callback)
    app.router.add_route("*", "/oauth2/sign_out", handlers.sign_out)
    app.router.add_get("/oauth2/userinfo", handlers.userinfo)
    app.router.add_get("/oauth2/auth", handlers.auth)
    app.router.add_get("/ping", handlers.ping)
    app.router.add_get("/ready", handlers.ready)
    app.router.add_route("*", "/{tail:.*}", handlers.gate)


async def _oidc_ctx(
    app: web.Application, *, config: ProviderConfig, seal: SessionCodec
) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    connector = aiohttp.TCPConnector(ssl=ssl_context(settings.provider_ca_file))
    async with aiohttp.ClientSession(
        timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), connector=connector
    ) as http:
        client = app[OIDC] = OIDCClient(http, config, app[CLOCK])
        # A refresh may fetch keys and userinfo too: the lock outlives a slow but successful one.
        lock_s = 3 * settings.provider_timeout + 5
        policy = RefreshPolicy(cookie_refresh_s=settings.cookie_refresh, lock_s=lock_s)
        app[REFRESHER] = Refresher(client, app[CLAIMS], policy, app[CLOCK], shared=app[SHARED], seal=seal)
        if settings.skip_jwt_bearer_tokens:
            extra = parse_pairs(settings.extra_jwt_issuers)
            app[BEARER] = BearerVerifier(http, client, extra, app[CLOCK])
        yield
        await app[REFRESHER].close()
        if BEARER in app:
            await app[BEARER].close()
        await client.close()


async def _shared_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[SHARED].close()


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
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
    )
    await proxy.start()
    app[PROXY] = proxy
    yield
    await proxy.close()
    if demo is not None:
        await demo.cleanup()


def run(settings: Settings, announce: Callable[[str], None] = print) -> int:
    """Serve until SIGTERM/SIGINT: in this process, or in --workers processes under a supervisor."""
    host, port = split_address(settings.http_address)
    if settings.oidc_type == "embedded":
        print(warning_text(remote=settings.dev_idp_allow_remote), file=sys.stderr, flush=True)
    count, why = settings.workers or (1 if settings.oidc_type == "embedded" else 0), ""
    if not count:
        count, why = workers.default_workers()

    def listening(_: object) -> None:
        plural = f" ({count} workers)" if count > 1 else ""
        if why:  # the default: say where the number came from, so a container limit can be checked
            plural = f" ({count} worker{'s' if count > 1 else ''}: {why})"
        announce(f"oidcproxy listening on {settings.http_address}{plural}")
        if settings.dev:
            announce(f"Open {base_url(settings)}/ and sign in with any email and password.")

    if count == 1:
        _serve(settings, listening, None, host=host, port=port)
        return 0
    # The workers share refresh and login state through a keeper process on a private unix socket,
    # bound here so that it exists before any worker connects (and outlives a restarted keeper).
    keeper, path = keeper_socket()
    try:
        serve = functools.partial(_serve_on, settings, path)
        companion = functools.partial(serve_keeper, keeper, workers.new_event_loop)
        return workers.supervise(host, port, count, serve, on_ready=listening, companion=companion)
    finally:
        remove_keeper_socket(keeper, path)


def _serve_on(settings: Settings, path: str, sock: socket.socket, ready: Callable[[], None]) -> None:
    _serve(settings, lambda _: ready(), path, sock=sock)


def _serve(
    settings: Settings, listening: Callable[[str], None] | None, state_socket: str | None, **where: Any
) -> None:
    """One process's server: app built here (after any fork), uvloop if installed, logs off the loop."""
    access_log = logging.getLogger("oidcproxy.access") if settings.request_logging else None
    with workers.log_off_the_loop():
        web.run_app(
            build_app(settings, state_socket=state_socket),
            print=listening,
            access_log=access_log,
            access_log_class=BatchedAccessLogger,
            loop=workers.new_event_loop(),
            shutdown_timeout=workers.WorkerPolicy().drain_s,
            **where,
        )
        flush_all()
