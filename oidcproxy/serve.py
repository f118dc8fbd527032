"""Serving: `run(settings)` in this process or in N workers on one address under a supervisor.

Process plumbing: the workers share one address (SO_REUSEPORT) under a supervising parent, uvloop
when it is installed, and logging that writes from a thread instead of the event loop. The parent
binds the address first (a busy port fails before anything forks, and port 0 is resolved once), forks
the workers, restarts a worker that dies, and on SIGTERM or SIGINT forwards SIGTERM to every worker
and waits for their graceful drain. Sessions live in cookies; what the workers do share (one refresh
per session, a login state used once) lives in a `companion` process the parent forks first, restarts
when it dies and stops only after the workers drained: the coordination keeper. With
--https-address every process serves both addresses, the HTTPS one through `web.tls.ServingTls`,
whose certificate is reloaded when its files change. With --metrics-address the parent binds that
address too; one process serves it beside the app, several workers write their values to files in a
private directory under $TMPDIR (prometheus-client's multiprocess mode) and the keeper's process
serves their sum. Each process drains on SIGTERM (`run_app`, `Drain`: README, Shutdown). Only `run`,
`_serve`, `Drain` (web.appkeys.DRAINING) and the metrics helpers import from oidcproxy (config,
coordination, idp's warning, web); the plumbing below them imports nothing from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import logging.handlers
import math
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import queue
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from aiohttp import web

from oidcproxy.config import Settings, split_address
from oidcproxy.coordination import keeper_socket, remove_keeper_socket, serve_keeper
from oidcproxy.idp import warning_text
from oidcproxy.web import base_url, build_app
from oidcproxy.web.accesslog import batched_access_log
from oidcproxy.web.appkeys import DRAINING, METRICS
from oidcproxy.web.metrics import scrape_registry, serve_metrics, use_multiprocess_dir
from oidcproxy.web.tls import ServingTls

__all__ = [
    "run",
    "WorkerPolicy",
    "cgroup_cpu_quota",
    "default_workers",
    "log_off_the_loop",
    "new_event_loop",
    "reuseport_socket",
    "supervise",
]

log = logging.getLogger("oidcproxy.workers")

Serve = Callable[[Sequence[socket.socket], Callable[[], None]], None]
"""serve(socks, ready): serve on the bound sockets (one an address) until SIGTERM; ready() once it accepts."""
Address = tuple[str, int]


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


def run_app(
    app: web.Application,
    sites: Callable[[web.AppRunner], list[web.BaseSite]],
    *,
    loop: asyncio.AbstractEventLoop,
    listening: Callable[[str], None] | None,
    tls: ServingTls | None = None,
    delay_s: float = 0.0,
    **runner_args: Any,
) -> None:
    """aiohttp's web.run_app, with a TLS context per site (it has one for all), the certificate poller,
    and our own signal handling (`Drain`): serve until SIGTERM or SIGINT, then drain (README: Shutdown):

    1. /ready answers 503 at once (and each answer closes its keep-alive connection);
    2. after SIGTERM, new connections are still served for `delay_s` (--shutdown-delay), so the
       ingress notices; SIGINT (Ctrl-C) skips the delay, and a SIGINT during it ends it;
    3. the listeners close; open WebSockets get 1001; requests in flight get `shutdown_timeout`
       (--shutdown-grace);
    4. the app's resources are released and the process exits 0.

    aiohttp's own handler raised GracefulExit into the loop again on a second SIGTERM (a process-group
    signal and the supervisor's both reach a worker), interrupting the drain with a traceback.
    """

    async def main() -> None:
        runner = web.AppRunner(app, handle_signals=False, keepalive_timeout=75.0, **runner_args)
        await runner.setup()
        drain = Drain()
        poller = None
        try:
            for site in sites(runner):
                await site.start()
            drain.listen()
            if tls is not None:
                poller = asyncio.create_task(tls.keep_fresh(), name="tls-reload")
            if listening is not None:
                listening(", ".join(sorted(str(site.name) for site in runner.sites)))
            await drain.until_stopped(app, delay_s)
        finally:
            drain.forget()
            if poller is not None:
                poller.cancel()
            await runner.cleanup()

    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        _close_loop(loop)
        asyncio.set_event_loop(None)


class Drain:
    """The first SIGTERM/SIGINT starts the drain; a later SIGINT cuts the delay short; more SIGTERMs
    (a process-group signal and the supervisor's own both reach a worker) change nothing."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.first: asyncio.Future[int] = self._loop.create_future()
        self.hurry = asyncio.Event()

    async def until_stopped(self, app: web.Application, delay_s: float) -> None:
        """Wait for the first signal, mark the app as draining, then wait out the delay (SIGTERM)."""
        signum = await self.first
        app[DRAINING].set()
        delay = delay_s if signum == signal.SIGTERM else 0.0
        log.info(
            "%s: /ready answers 503; serving %gs more (--shutdown-delay), then draining",
            signal.Signals(signum).name,
            delay,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.hurry.wait(), delay)

    def listen(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._got, sig)

    def forget(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.remove_signal_handler(sig)

    def _got(self, signum: int) -> None:
        if not self.first.done():
            self.first.set_result(signum)
        elif signum == signal.SIGINT:
            self.hurry.set()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """What run_app does after its app: cancel what is left, finish async generators, close."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    """How the parent treats its workers."""

    drain_s: float = 20.0  # how long a worker may drain after SIGTERM (--shutdown-delay + -grace)
    min_uptime_s: float = 2.0  # a worker that dies sooner counts as failing to start
    max_quick_deaths: int = 5  # that many quick deaths in a row: give up rather than crash-loop


def default_workers(cgroup_root: str = "/sys/fs/cgroup") -> tuple[int, str]:
    """How many workers fit this container, and why: the cgroup CPU quota rounded up, else the CPUs
    this process may run on (sched_getaffinity), else the CPU count; at least 1."""
    try:
        cpus, where = len(os.sched_getaffinity(0)), "CPUs in the affinity mask"
    except AttributeError:  # not Linux
        cpus, where = os.cpu_count() or 1, "CPUs"
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None and math.ceil(quota[0]) <= cpus:
        return max(1, math.ceil(quota[0])), f"cgroup {quota[1]} quota {quota[0]:g} CPUs"
    return max(1, cpus), f"{cpus} {where}"


def cgroup_cpu_quota(root: str) -> tuple[float, str] | None:
    """The CPU quota under the cgroup mount `root` in CPUs, and the file it came from; None: no limit.

    cgroup v2: `cpu.max` is "<quota> <period>" or "max <period>". v1: `cpu.cfs_quota_us` (-1: none)
    over `cpu.cfs_period_us`, in the cpu controller's folder (`cpu`, `cpu,cpuacct`) or in root itself.
    """
    base = pathlib.Path(root)
    text = _read(base / "cpu.max")
    if text is not None:
        quota, _, period = text.partition(" ")
        return _ratio(quota, period, "cpu.max")
    for folder in (base / "cpu", base / "cpu,cpuacct", base / "cpuacct,cpu", base):
        quota_text, period_text = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota_text is not None and period_text is not None:
            return _ratio(quota_text, period_text, "cpu.cfs_quota_us")
    return None


def _read(path: pathlib.Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ratio(quota: str, period: str, source: str) -> tuple[float, str] | None:
    try:
        cpus = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):  # "max", or an unreadable line: no limit we can use
        return None
    return (cpus, source) if cpus > 0 else None


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when the `speed` extra is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@contextlib.contextmanager
def log_off_the_loop() -> Iterator[None]:
    """Route the root logger's records through a queue to a thread that does the (blocking) writes."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    if not handlers:
        yield
        return
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    root.handlers = [logging.handlers.QueueHandler(records)]
    listener.start()
    try:
        yield
    finally:
        listener.stop()
        root.handlers = handlers


def supervise(
    host: str,
    port: int,
    count: int,
    serve: Serve,
    *,
    policy: WorkerPolicy = WorkerPolicy(),
    on_ready: Callable[[int], None] = lambda port: None,
    companion: Callable[[], None] | None = None,
    more: Sequence[Address] = (),
) -> int:
    """Run `count` workers each calling serve(own sockets on host:port and `more`, ready); return the
    exit code.

    on_ready(port) is called once every first-generation worker accepts connections. `companion`,
    if given, runs in one more process until SIGTERM, which it gets once the workers have exited.
    """
    reserved: list[socket.socket] = []
    try:
        for address in [(host, port), *more]:  # resolves port 0, fails early on a busy address
            reserved.append(reuseport_socket(*address))
        addresses = [(a[0], s.getsockname()[1]) for a, s in zip([(host, port), *more], reserved, strict=True)]
        return _Supervisor(addresses, count, serve, policy, reserved, companion).run(on_ready)
    finally:
        for sock in reserved:
            sock.close()


class _Supervisor:
    def __init__(
        self,
        addresses: list[Address],
        count: int,
        serve: Serve,
        policy: WorkerPolicy,
        reserved: list[socket.socket],
        companion: Callable[[], None] | None = None,
    ) -> None:
        self._addresses, self._port, self._count = addresses, addresses[0][1], count
        self._serve, self._policy, self._reserved = serve, policy, reserved
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, tuple[multiprocessing.process.BaseProcess, float]] = {}
        self._stopping = False
        self._quick_deaths = 0
        self._ready_r, self._ready_w = os.pipe()
        self._parent = os.getpid()
        self.companion = companion
        self._companion: tuple[multiprocessing.process.BaseProcess, float] | None = None

    def run(self, on_ready: Callable[[int], None]) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._start_companion()
            for slot in range(self._count):
                self._start(slot)
            code = self._watch(lambda: on_ready(self._port))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._reap()
            os.close(self._ready_r)
            os.close(self._ready_w)
        return code

    def _start(self, slot: int) -> None:
        process = self._context.Process(target=self._child, name=f"oidcproxy-worker-{slot}", daemon=False)
        process.start()
        self._workers[slot] = (process, time.monotonic())

    def _child(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _die_with_parent(self._parent)
        for sock in self._reserved:
            sock.close()
        os.close(self._ready_r)
        self._serve([reuseport_socket(*address) for address in self._addresses], self._signal_ready)

    def _start_companion(self) -> None:
        if self.companion is not None:
            process = self._context.Process(target=self._companion_child, name="oidcproxy-state")
            process.start()
            self._companion = (process, time.monotonic())

    def _companion_child(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when it stops
        # Out of the process group too: a SIGTERM to the whole group (`kill -TERM -PGID`, some init
        # systems) must not stop the keeper while the workers still drain and need it. The parent's
        # own SIGTERM, sent after they exited, and PR_SET_PDEATHSIG still reach it.
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        _die_with_parent(self._parent)
        _name_process(b"oidcproxy-state")
        for sock in self._reserved:
            sock.close()
        os.close(self._ready_r)
        os.close(self._ready_w)
        assert self.companion is not None  # noqa: S101 - only started when set
        self.companion()

    def _signal_ready(self) -> None:
        os.write(self._ready_w, b".")

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("%s: draining %d workers", signal.Signals(signum).name, len(self._workers))
        self._stopping = True
        for process, _ in self._workers.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def _watch(self, on_ready: Callable[[], None]) -> int:
        waiting = self._count
        while not self._stopping:
            sentinels: list[Any] = [p.sentinel for p, _ in self._workers.values()]
            if self._companion is not None:
                sentinels.append(self._companion[0].sentinel)
            if self._ready_r in multiprocessing.connection.wait([*sentinels, self._ready_r], timeout=1.0):
                ready = len(os.read(self._ready_r, 4096))
                if 0 < waiting <= ready:
                    on_ready()
                waiting -= ready
            self._watch_companion()
            for slot, (process, started) in list(self._workers.items()):
                if process.is_alive() or self._stopping:
                    continue
                process.join()
                quick = time.monotonic() - started < self._policy.min_uptime_s
                self._quick_deaths = self._quick_deaths + 1 if quick else 0
                log.warning("worker %d (pid %s) died with exit code %s", slot, process.pid, process.exitcode)
                if self._quick_deaths >= self._policy.max_quick_deaths:
                    log.error("workers keep dying at start; giving up")
                    self._stop(signal.SIGTERM, None)
                    return 1
                self._start(slot)
        return 0

    def _watch_companion(self) -> None:
        if self._companion is None or self._stopping or self._companion[0].is_alive():
            return
        process, started = self._companion
        process.join()
        log.warning("state process (pid %s) died with exit code %s", process.pid, process.exitcode)
        if time.monotonic() - started < self._policy.min_uptime_s:
            time.sleep(self._policy.min_uptime_s)  # not a busy loop when it cannot start
        self._start_companion()

    def _reap(self) -> None:
        deadline = time.monotonic() + self._policy.drain_s + 5.0
        for process, _ in self._workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker pid %s did not drain in time; killing it", process.pid)
                process.kill()
                process.join()
        if self._companion is not None:
            process = self._companion[0]
            process.terminate()
            process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join()


def _die_with_parent(parent: int) -> None:
    """Linux: a SIGKILLed supervisor must not leave orphan workers holding the port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _name_process(name: bytes) -> None:
    """Linux: the name ps and /proc/PID/comm show (at most 15 bytes)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
