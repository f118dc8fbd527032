"""One serving process's life: `run_app` (aiohttp's web.run_app with a TLS context per site, the
certificate poller and our own signals) and `Drain`: the first SIGTERM/SIGINT marks the app as draining
(web.appkeys.DRAINING: /ready 503), waits --shutdown-delay, then the runner's cleanup gives requests in
flight --shutdown-grace (README: Shutdown). Imports web.appkeys and web.tls only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from oidcproxy.web.appkeys import DRAINING
from oidcproxy.web.tls import ServingTls

__all__ = ["Drain", "run_app"]

log = logging.getLogger("oidcproxy.workers")


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
