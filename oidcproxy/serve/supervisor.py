"""The supervisor: the parent binds every address first (a busy port fails before anything forks, port
0 is resolved once), forks the workers and a `companion` (the coordination keeper), restarts either
when it dies, and on SIGTERM or SIGINT forwards SIGTERM to every worker and waits for their drain; the
companion stops only after the workers exited. Imports serve.workers; nothing else from oidcproxy.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from oidcproxy.serve.workers import WorkerPolicy, reuseport_socket

__all__ = ["Address", "Serve", "supervise"]

log = logging.getLogger("oidcproxy.workers")

Serve = Callable[[Sequence[socket.socket], Callable[[], None]], None]
"""serve(socks, ready): serve on the bound sockets (one an address) until SIGTERM; ready() once it accepts."""
Address = tuple[str, int]


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
