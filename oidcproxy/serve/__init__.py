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
serves their sum. Each process drains on SIGTERM (`run_app`, `Drain`: README, Shutdown).

    serving     run(settings), one process's server, the metrics listener; the only module here that
                imports the rest of oidcproxy (config, coordination, idp's warning, web)
    drain       run_app and Drain: one process's signals, --shutdown-delay and --shutdown-grace
                (imports web.appkeys and web.tls only)
    supervisor  supervise: the parent, its workers and their companion (imports serve.workers only)
    workers     worker count from the cgroup quota, SO_REUSEPORT sockets, the event loop, logging off
                the loop (imports nothing from oidcproxy)

The module layers and the plumbing's independence are contracts in pyproject.toml.
"""

from __future__ import annotations

from oidcproxy.serve.drain import Drain, run_app
from oidcproxy.serve.serving import run
from oidcproxy.serve.supervisor import supervise
from oidcproxy.serve.workers import (
    WorkerPolicy,
    cgroup_cpu_quota,
    default_workers,
    log_off_the_loop,
    new_event_loop,
    reuseport_socket,
)

__all__ = [
    "Drain",
    "WorkerPolicy",
    "cgroup_cpu_quota",
    "default_workers",
    "log_off_the_loop",
    "new_event_loop",
    "reuseport_socket",
    "run",
    "run_app",
    "supervise",
]
