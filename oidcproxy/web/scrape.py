"""The metrics listener and several workers' metrics.

    serve_metrics    GET /metrics on its own socket, never behind the sign-in gate
    use_multiprocess_dir, scrape_registry
                     several workers: each writes its values to files under one directory
                     (prometheus-client's multiprocess mode) and the listener sums them at scrape time

What is recorded is in metrics.py; serve binds the socket and picks who serves it. Imports
aiohttp and prometheus-client; nothing of oidcproxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import socket
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, multiprocess, values
from prometheus_client.exposition import choose_encoder

__all__ = ["scrape_registry", "serve_metrics", "use_multiprocess_dir"]


@contextlib.asynccontextmanager
async def serve_metrics(
    sock: socket.socket, registry: CollectorRegistry, before: Callable[[], None] = lambda: None
) -> AsyncIterator[None]:
    """Serve GET /metrics from `registry` on the listening socket `sock` until the context ends.

    `before()` runs ahead of each scrape (mirrored counters are synced there). The exposition is
    rendered in a thread: with several workers it reads every worker's file."""

    async def scrape(request: web.Request) -> web.Response:
        before()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await asyncio.to_thread(encoder, registry)
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock, shutdown_timeout=1.0).start()
    try:
        yield
    finally:
        await runner.cleanup()


def use_multiprocess_dir(path: str) -> None:
    """Several workers: metrics made from now on (in this process and its forks) write to `path`.

    prometheus-client chooses its value class when it is imported, from PROMETHEUS_MULTIPROC_DIR; we
    decide later (after reading the settings), so the choice is made again here, before any fork."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    # The pid as the value class checks it on every update, kept instead of asked for (a syscall
    # per update); a forked child sets its own before it records anything.
    values.ValueClass = values.MultiProcessValue(process_identifier=_own_pid.get)  # type: ignore[no-untyped-call]
    if not _own_pid.hooked:
        os.register_at_fork(after_in_child=_own_pid.refresh)
        _own_pid.hooked = True


class _Pid:
    def __init__(self) -> None:
        self.pid, self.hooked = os.getpid(), False

    def get(self) -> int:
        return self.pid

    def refresh(self) -> None:
        self.pid = os.getpid()


_own_pid = _Pid()


def scrape_registry(path: str) -> tuple[CollectorRegistry, Callable[[], None]]:
    """The registry summing every worker's file under `path`, and what to run before each scrape: a
    dead worker's live gauges (open WebSockets) are dropped, its counters kept."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]

    def forget_the_dead() -> None:
        for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
            found = re.search(r"_(\d+)\.db$", name)
            if found and not _alive(int(found.group(1))):
                multiprocess.mark_process_dead(int(found.group(1)), path)  # type: ignore[no-untyped-call]

    return registry, forget_the_dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
