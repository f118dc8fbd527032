"""Prometheus metrics: what the web layer saw, recorded where the decisions are made.

    Metrics          every metric of one process, in its own registry; the label children the hot
                     path uses are bound once (`.labels()` never runs per request), per provider
                     where the provider is known (the set of providers is fixed at start; an id that
                     is not configured counts as provider ""). Disabled (no --metrics-address),
                     every recorder is a no-op and no middleware is installed.
    observe_requests the outermost middleware: requests by route class and status, and their duration
    provider_trace   an aiohttp TraceConfig for the providers' client session: calls by provider,
                     endpoint and outcome, and their latency (the oidc part knows nothing of metrics)

The listener (/metrics on its own socket) and several workers' files are in scrape.py.

The pure parts (authz, login, forwarded, sessions, oidc, proxy) return what happened or own plain
counters (the key set's fetches, the proxy's cuts); this module mirrors those counters and the
handlers record the rest. Imports appkeys, the about module and prometheus-client; nothing else of
oidcproxy (a forbidden contract in pyproject.toml keeps prometheus-client out of the other parts).
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Literal

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from oidcproxy.about import version_info

__all__ = [
    "LOGIN_FAILURES",
    "NO_PROVIDER",
    "ROUTES",
    "ByProvider",
    "Metrics",
    "observe_requests",
    "provider_trace",
]

ROUTES: Final = ("proxied", "auth_request", "login", "callback", "sign_out", "userinfo", "static")
"""Route classes: the gate's proxied paths, /oauth2/auth, sign_in and start, callback, sign_out,
userinfo, and the rest (/ping, /ready, the embedded provider)."""

LOGIN_FAILURES: Final = (
    "provider_error",  # the provider sent the browser back with ?error=
    "state",  # no, expired, forged or replayed login state
    "token_refused",  # the token endpoint refused the code
    "token_invalid",  # the ID token (or userinfo) failed a check
    "forbidden",  # signed in, but the rules let the person not pass
    "provider_unavailable",  # the provider could not be reached or answered wrongly
    "state_unavailable",  # the workers' shared state did not answer
    "other",
)

_AUTH: Final = ("cookie", "bearer", "skipped", "unauthenticated", "forbidden")
_REFRESH: Final = ("ok", "transient", "fatal", "superseded")
_STORE_OPS: Final = ("load", "save", "clear")
_FAST_S: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_COOKIE_BYTES: Final = (256, 512, 1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 32768)
_PROVIDER_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Off:
    """Every recorder when metrics are off: a call that does nothing."""

    def labels(self, *_: str) -> _Off:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass


_OFF: Final = _Off()

Recorder = Any  # a prometheus-client metric or child, or _Off

NO_PROVIDER: Final = ""
"""The provider label when no configured provider is known (a forged callback, no session at all)."""


class ByProvider(dict[str, Any]):
    """Children bound per provider id; an id that is not configured gets NO_PROVIDER's, so the label's
    values stay the configured ids (and "") whatever a cookie or a callback path says."""

    __slots__ = ()

    def __missing__(self, provider: str) -> Any:
        return self[NO_PROVIDER]


class Metrics:
    """The metrics of one process. `routes` maps a route's handler to its class (see ROUTES);
    `providers` are the configured provider ids, the values of every `provider` label (and "")."""

    def __init__(
        self,
        *,
        enabled: bool,
        routes: Mapping[Callable[..., Any], str] | None = None,
        providers: Iterable[str] = ("default",),
    ) -> None:
        self.enabled = enabled
        self.providers = (*dict.fromkeys(providers), NO_PROVIDER)
        self.registry: CollectorRegistry | None = CollectorRegistry() if enabled else None
        self._routes = dict(routes or {})
        self._mirrors: list[_Mirror] = []
        self._requests = self._counter(
            "requests", "Requests answered, by route class and status", "route", "status"
        )
        self._by_status: dict[str, dict[int, Recorder]] = {r: {} for r in ROUTES}
        duration = self._histogram(
            "request_duration_seconds",
            "Time from the request's headers to the end of the answer, by route class (WebSockets not)",
            None,
            "route",
        )
        self.request_seconds = {r: duration.labels(r) for r in ROUTES}
        self.upstream_seconds = self._histogram(
            "upstream_response_seconds", "Time until the upstream's response headers arrived", None
        )
        cuts = self._counter("upstream_cuts", "Proxied responses cut after their status line", "side")
        self.cut = {side: cuts.labels(side) for side in ("upstream", "client")}
        auth = self._counter(
            "auth_decisions",
            "Gate and /oauth2/auth decisions, by outcome and provider",
            "outcome",
            "provider",
        )
        self.auth = self._each(lambda p: types.SimpleNamespace(**{o: auth.labels(o, p) for o in _AUTH}))
        started = self._counter("logins_started", "Sign-ins sent to the provider", "provider")
        self.logins_started = self._each(started.labels)
        completed = self._counter("logins_completed", "Sign-ins that ended with a session", "provider")
        self.logins_completed = self._each(completed.labels)
        failures = self._counter(
            "login_failures", "Callbacks that ended without a session", "reason", "provider"
        )
        self.login_failed = self._each(lambda p: {r: failures.labels(r, p) for r in LOGIN_FAILURES})
        refreshes = self._counter(
            "refreshes", "Session refreshes as requests saw them", "outcome", "provider"
        )
        self.refresh = self._each(
            lambda p: types.SimpleNamespace(**{o: refreshes.labels(o, p) for o in _REFRESH})
        )
        self._provider = self._counter(
            "provider_requests",
            "Calls to the provider, by endpoint, outcome and provider",
            "endpoint",
            "outcome",
            "provider",
        )
        self._provider_s = self._histogram(
            "provider_request_duration_seconds",
            "Time until the provider's response headers arrived, by endpoint and provider",
            _PROVIDER_S,
            "endpoint",
            "provider",
        )
        fetches = self._counter(
            "jwks_fetches", "Key set fetches, by outcome and provider", "outcome", "provider"
        )
        self.jwks_fetches = self._each(lambda p: {o: fetches.labels(o, p) for o in ("ok", "failed")})
        stale = self._counter(
            "jwks_stale_served", "Keys used past their lifetime after a failure, by provider", "provider"
        )
        self.jwks_stale = self._each(stale.labels)
        store = self._counter(
            "session_store_operations", "Session store operations, by outcome", "operation", "outcome"
        )
        self.store_outcome = {(op, o): store.labels(op, o) for op in _STORE_OPS for o in ("ok", "error")}
        store_s = self._histogram(
            "session_store_duration_seconds", "Time a session store operation took", _FAST_S, "operation"
        )
        self.store_seconds = {op: store_s.labels(op) for op in _STORE_OPS}
        self.cookie_bytes = self._histogram(
            "session_cookie_bytes", "Bytes of a saved session's cookies (names and values)", _COOKIE_BYTES
        )
        self.websockets = self._gauge("websockets_open", "WebSockets relayed now", "livesum")
        build = self._gauge(
            "build_info", "The running version (value 1)", "max", "version", "python", "aiohttp"
        )
        info = version_info()
        build.labels(info.oidcproxy, info.python, info.aiohttp).set(1)

    # -- recording ------------------------------------------------------------------------------
    def route_of(self, request: web.Request) -> str:
        return self._routes.get(request.match_info.handler, "static")

    def answered(self, route: str, status: int) -> None:
        """One request answered; the children for each (route, status) are made once."""
        children = self._by_status[route]
        child = children.get(status)
        if child is None:
            child = children[status] = self._requests.labels(route, str(status))
        child.inc()

    # The proxy's observer (proxy.ProxyObserver).
    def upstream_answered(self, seconds: float) -> None:
        self.upstream_seconds.observe(seconds)

    def upstream_cut(self, side: str) -> None:
        self.cut[side].inc()

    def websockets_open(self, delta: int) -> None:
        self.websockets.inc(delta)

    def provider_call(self, provider: str, endpoint: str, outcome: str, seconds: float | None) -> None:
        """One call to a provider (`provider` a configured id, or "" for a URL of none of them)."""
        provider = provider if provider in self.providers else NO_PROVIDER
        self._provider.labels(endpoint, outcome, provider).inc()  # the slow path: labels resolved here
        if seconds is not None:
            self._provider_s.labels(endpoint, provider).observe(seconds)

    def mirror(self, recorder: Recorder, read: Callable[[], int]) -> None:
        """Copy a counter another part owns (`read()`, never decreasing) into `recorder` at `sync()`."""
        if self.enabled:
            self._mirrors.append(_Mirror(recorder, read))

    def sync(self) -> None:
        for mirror in self._mirrors:
            mirror.sync()

    # -- building -------------------------------------------------------------------------------
    def _each(self, bind: Callable[[str], Any]) -> ByProvider:
        """`bind(provider)` for each configured provider and for NO_PROVIDER, made once here."""
        return ByProvider({p: bind(p) for p in self.providers})

    def _counter(self, name: str, doc: str, *labels: str) -> Recorder:
        if self.registry is None:
            return _OFF
        return Counter("oidcproxy_" + name, doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...] | None, *labels: str) -> Recorder:
        if self.registry is None:
            return _OFF
        if buckets is None:
            return Histogram("oidcproxy_" + name, doc, labels, registry=self.registry)
        return Histogram("oidcproxy_" + name, doc, labels, registry=self.registry, buckets=buckets)

    def _gauge(self, name: str, doc: str, mode: Literal["livesum", "max"], *labels: str) -> Recorder:
        if self.registry is None:
            return _OFF
        return Gauge("oidcproxy_" + name, doc, labels, registry=self.registry, multiprocess_mode=mode)


class _Mirror:
    __slots__ = ("_read", "_recorder", "_seen")

    def __init__(self, recorder: Recorder, read: Callable[[], int]) -> None:
        self._recorder, self._read, self._seen = recorder, read, 0

    def sync(self) -> None:
        now = self._read()
        if now > self._seen:
            self._recorder.inc(now - self._seen)
            self._seen = now


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def observe_requests(metrics: Metrics, started_key: web.RequestKey[web.StreamResponse]) -> Middleware:
    """The outermost middleware (installed only with metrics on): route class, status, duration.
    `started_key` names the response a request has begun to send (appkeys.STARTED)."""
    clock = time.perf_counter
    answered, seconds, route_of = metrics.answered, metrics.request_seconds, metrics.route_of

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = clock()
        route = route_of(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            answered(route, exc.status)
            raise
        except BaseException as exc:
            # Cancelled once the client went away: what was sent (a WebSocket's 101), else 499 as
            # NGINX counts it; anything else escaping the error middleware is a 500.
            sent = request.get(started_key)
            gone = 499 if isinstance(exc, asyncio.CancelledError) else 500
            answered(route, gone if sent is None else sent.status)
            raise
        answered(route, response.status)
        if response.status != 101:  # a WebSocket's lifetime is not a request's duration
            seconds[route].observe(clock() - started)
        return response

    return observed


# -- provider calls, seen from the aiohttp client session ------------------------------------------
def provider_trace(
    metrics: Metrics, endpoints: Callable[[], Mapping[str, tuple[str, str]]]
) -> aiohttp.TraceConfig:
    """Record every call of a client session; `endpoints()` maps the known URLs to their provider and
    name (discovery, token, jwks, userinfo); another discovery document is `discovery` of provider "",
    anything else `other`."""
    trace = aiohttp.TraceConfig()

    def endpoint(url: Any) -> tuple[str, str]:
        text = str(url)
        found = endpoints().get(text)
        if found is not None:
            return found
        if text.endswith("/.well-known/openid-configuration"):
            return NO_PROVIDER, "discovery"
        return NO_PROVIDER, "other"

    async def start(_: Any, ctx: types.SimpleNamespace, params: Any) -> None:
        ctx.started = time.perf_counter()

    async def end(_: Any, ctx: types.SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        status = params.response.status
        outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
        metrics.provider_call(*endpoint(params.url), outcome, time.perf_counter() - ctx.started)

    async def failed(_: Any, ctx: types.SimpleNamespace, params: aiohttp.TraceRequestExceptionParams) -> None:
        metrics.provider_call(*endpoint(params.url), "unreachable", time.perf_counter() - ctx.started)

    trace.on_request_start.append(start)
    trace.on_request_end.append(end)
    trace.on_request_exception.append(failed)
    trace.freeze()
    return trace
