"""`run(settings)`: in this process, or in N workers under the supervisor, with the coordination keeper
as its companion; one process's server (`_serve`: the app built after any fork, its sites, the access
log); --metrics-address bound by the parent, served beside the app (one process) or by the keeper's
process summing the workers' files (prometheus-client's multiprocess mode, a private directory under
$TMPDIR). The one module of serve that imports the rest of oidcproxy (config, coordination, idp's
warning, web).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from oidcproxy.config import Settings, split_address
from oidcproxy.coordination import keeper_socket, remove_keeper_socket, serve_keeper
from oidcproxy.idp import warning_text
from oidcproxy.serve.drain import run_app
from oidcproxy.serve.supervisor import Address, supervise
from oidcproxy.serve.workers import WorkerPolicy, default_workers, log_off_the_loop, new_event_loop
from oidcproxy.web import base_url, build_app
from oidcproxy.web.accesslog import batched_access_log
from oidcproxy.web.appkeys import METRICS
from oidcproxy.web.scrape import scrape_registry, serve_metrics, use_multiprocess_dir
from oidcproxy.web.tls import ServingTls

__all__ = ["run"]

log = logging.getLogger("oidcproxy.workers")


def run(settings: Settings, announce: Callable[[str], None] = print) -> int:
    """Serve until SIGTERM/SIGINT: in this process, or in --workers processes under a supervisor."""
    addresses = [split_address(settings.http_address)]
    if settings.https_address:
        addresses.append(split_address(settings.https_address))
    if settings.oidc_type == "embedded":
        warning = warning_text(remote=settings.dev_idp_allow_remote)
        if settings.log_format == "json":  # every line on stderr one object, the banner too
            logging.getLogger("oidcproxy").warning(warning)
        else:
            print(warning, file=sys.stderr, flush=True)
    count, why = settings.workers or (1 if settings.oidc_type == "embedded" else 0), ""
    if not count:
        count, why = default_workers()
    try:
        metrics = _metrics_socket(settings.metrics_address)
    except OSError as exc:
        print(
            f"oidcproxy: --metrics-address: cannot listen on {settings.metrics_address}: {exc}",
            file=sys.stderr,
        )
        return 2

    def listening(_: object) -> None:
        plural = f" ({count} workers)" if count > 1 else ""
        if why:  # the default: say where the number came from, so a container limit can be checked
            plural = f" ({count} worker{'s' if count > 1 else ''}: {why})"
        https = f" and https on {settings.https_address}" if settings.https_address else ""
        announce(f"oidcproxy listening on {settings.http_address}{https}{plural}")
        if metrics is not None:
            mhost, mport = metrics.getsockname()[:2]
            announce(f"oidcproxy metrics on http://{mhost}:{mport}/metrics")
        if settings.dev:
            announce(f"Open {base_url(settings)}/ and sign in with any email and password.")

    try:
        if count == 1:
            _serve(settings, listening, None, addresses, metrics)
            return 0
        return _serve_workers(settings, addresses, count, listening, metrics)
    finally:
        if metrics is not None:
            metrics.close()


def _serve_workers(
    settings: Settings,
    addresses: list[Address],
    count: int,
    listening: Callable[[int], None],
    metrics: socket.socket | None,
) -> int:
    folder, base = "", os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - a private mkdtemp inside
    if metrics is not None:
        try:
            folder = tempfile.mkdtemp(prefix="oidcproxy-metrics-", dir=base)
        except OSError as exc:
            print(
                f"oidcproxy: --metrics-address: {count} workers keep their counts in files, and no "
                f"directory could be made in {base} ({exc.strerror}); mount a writable /tmp (the "
                "chart and deploy/ mount a tmpfs) or point TMPDIR at a writable directory",
                file=sys.stderr,
            )
            return 2
        use_multiprocess_dir(folder)
    # The workers share refresh and login state through a keeper process on a private unix socket,
    # bound here so that it exists before any worker connects (and outlives a restarted keeper).
    keeper, path = keeper_socket()
    try:
        serve = functools.partial(_serve_on, settings, path)
        beside = None if metrics is None else functools.partial(_scrape_all, metrics, folder)
        companion = functools.partial(serve_keeper, keeper, new_event_loop, beside)
        host, port = addresses[0]
        policy = WorkerPolicy(drain_s=settings.shutdown_delay + settings.shutdown_grace)
        return supervise(
            host,
            port,
            count,
            serve,
            policy=policy,
            on_ready=listening,
            companion=companion,
            more=addresses[1:],
        )
    finally:
        remove_keeper_socket(keeper, path)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def _metrics_socket(address: str) -> socket.socket | None:
    """The metrics listener, bound before anything forks: a busy port fails at once, port 0 is resolved."""
    if not address:
        return None
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


@contextlib.asynccontextmanager
async def _scrape_all(sock: socket.socket, folder: str) -> AsyncIterator[None]:
    """In the keeper's process: /metrics summing every worker's file."""
    registry, before = scrape_registry(folder)
    async with serve_metrics(sock, registry, before):
        yield


async def _scrape_one(app: web.Application, *, sock: socket.socket) -> AsyncIterator[None]:
    metrics = app[METRICS]
    assert metrics.registry is not None  # noqa: S101 - enabled by --metrics-address
    async with serve_metrics(sock, metrics.registry, metrics.sync):
        yield


def _serve_on(
    settings: Settings, path: str, socks: Sequence[socket.socket], ready: Callable[[], None]
) -> None:
    _serve(settings, lambda _: ready(), path, socks)


def _serve(
    settings: Settings,
    listening: Callable[[str], None] | None,
    state_socket: str | None,
    where: Sequence[Address | socket.socket],
    metrics: socket.socket | None = None,
) -> None:
    """One process's server: app built here (after any fork), uvloop if installed, logs off the loop.

    `where`: the HTTP address or bound socket first, then the HTTPS one with --https-address.
    `metrics`: this one process serves /metrics on that socket too.
    """
    access_log = logging.getLogger("oidcproxy.access") if settings.request_logging else None
    access_log_class, flush_access_log = batched_access_log(
        fmt=settings.log_format,
        silence_ping=settings.silence_ping_logging,
        exclude=settings.exclude_logging_path,
    )
    tls = None
    if settings.https_address:  # read and checked before listening: a bad pair stops start-up
        tls = ServingTls(settings.tls_cert_file, settings.tls_key_file, settings.tls_min_version)
    with log_off_the_loop():
        app = build_app(settings, state_socket=state_socket)
        if metrics is not None:
            app.cleanup_ctx.append(functools.partial(_scrape_one, sock=metrics))
        run_app(
            app,
            functools.partial(_sites, where, tls),
            loop=new_event_loop(),
            listening=listening,
            tls=tls,
            delay_s=settings.shutdown_delay,
            access_log=access_log,
            access_log_class=access_log_class,
            shutdown_timeout=settings.shutdown_grace,
        )
        flush_access_log()


def _sites(
    where: Sequence[Address | socket.socket], tls: ServingTls | None, runner: web.AppRunner
) -> list[web.BaseSite]:
    contexts = [None, tls.context if tls is not None else None]
    sites: list[web.BaseSite] = []
    for place, context in zip(where, contexts, strict=False):
        if isinstance(place, socket.socket):
            sites.append(web.SockSite(runner, place, ssl_context=context))
        else:
            host, port = place
            sites.append(web.TCPSite(runner, host, port, ssl_context=context))
    return sites
