"""Process plumbing without a proxy: shared ports, the crash-loop guard, logging off the loop, options."""

from __future__ import annotations

import logging
import os
import socket
import threading

import pytest

from oidcproxy.config import Settings
from oidcproxy.serve import WorkerPolicy, default_workers, log_off_the_loop, reuseport_socket, supervise
from tests.factories import make_settings


def test_two_reuseport_sockets_listen_on_one_port() -> None:
    first = reuseport_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = reuseport_socket("127.0.0.1", port)
    try:
        first.listen()
        second.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        first.close()
        second.close()


def test_a_port_held_without_reuseport_is_refused() -> None:
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    try:
        with pytest.raises(OSError):
            reuseport_socket("127.0.0.1", plain.getsockname()[1])
    finally:
        plain.close()


def test_workers_that_die_at_start_make_the_supervisor_give_up() -> None:
    def crash(socks: object, ready: object) -> None:
        os._exit(3)

    ready_ports: list[int] = []
    policy = WorkerPolicy(drain_s=1.0, min_uptime_s=30.0, max_quick_deaths=3)
    code = supervise("127.0.0.1", 0, 2, crash, policy=policy, on_ready=ready_ports.append)
    assert code == 1
    assert ready_ports == []  # never announced as listening


def test_log_records_are_written_by_a_thread_not_the_caller() -> None:
    writers: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            writers.append(threading.current_thread().name)

    root = logging.getLogger()
    capture = Capture()
    before = list(root.handlers)
    root.handlers = [capture]
    try:
        with log_off_the_loop():
            logging.getLogger("oidcproxy.test").warning("one line")
        assert root.handlers == [capture]
    finally:
        root.handlers = before
    assert writers and threading.current_thread().name not in writers


def test_workers_option_defaults_to_one_per_cpu_and_refuses_negatives() -> None:
    assert make_settings().workers == 0
    assert default_workers()[0] >= 1
    with pytest.raises(ValueError, match="--workers: must be 0"):
        make_settings(workers=-1)
    assert make_settings(request_logging=False).request_logging is False
    assert Settings.model_fields["workers"].description
