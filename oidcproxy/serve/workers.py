"""Worker plumbing: how many workers fit this container (cgroup CPU quota, affinity), the
SO_REUSEPORT socket each binds, the event loop (uvloop when installed) and logging that writes from a
thread instead of the event loop. Imports nothing from oidcproxy (a contract in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import math
import os
import pathlib
import queue
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "WorkerPolicy",
    "cgroup_cpu_quota",
    "default_workers",
    "log_off_the_loop",
    "new_event_loop",
    "reuseport_socket",
]

log = logging.getLogger("oidcproxy.workers")


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
