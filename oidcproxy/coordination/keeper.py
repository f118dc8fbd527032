"""The keeper: one `LocalState` in its own process, served to the workers over a unix socket.

    SocketState   a worker's client of the keeper (length-prefixed JSON frames); a SharedState
    serve_keeper  the keeper process's main: a LocalState served on the socket that keeper_socket()
                  made before the supervisor forked (see serve.supervise's `companion`)

Faults on the socket raise errors.StateUnavailable. Imports model, errors and `state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import secrets
import signal
import socket
import struct
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

from oidcproxy.coordination.state import LocalState
from oidcproxy.errors import StateUnavailable

__all__ = ["SocketState", "keeper_socket", "remove_keeper_socket", "serve_keeper", "start_keeper"]

log = logging.getLogger("oidcproxy.sharedstate")

_HEADER = struct.Struct(">I")
_MAX_FRAME = 8 * 1024 * 1024


# -- the keeper: a LocalState in its own process, served over a unix socket -----------------------
# A frame is a 4-byte big-endian length and a JSON array. Request: [id, op, key, value, ttl_s, wait_s];
# answer: [id, value-or-null] or [id, null, error]. Answers may come out of order (get waits).


def _frame(message: list[Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> list[Any]:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > _MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    message = json.loads(await reader.readexactly(size))
    if not isinstance(message, list):
        raise ValueError("frame is not a JSON array")
    return message


class SocketState:
    """A worker's SharedState: requests to the keeper over one multiplexed unix-socket connection."""

    def __init__(self, path: str, timeout_s: float = 5.0) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[str | None]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()

    async def get(self, key: str, wait_s: float = 0.0) -> str | None:
        return await self._call("get", key, "", 0.0, wait_s)

    async def add(self, key: str, value: str, ttl_s: float) -> str | None:
        return await self._call("add", key, value, ttl_s)

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        await self._call("set", key, value, ttl_s)

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def close(self) -> None:
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._disconnect("closed")

    async def _call(
        self, op: str, key: str, value: str = "", ttl_s: float = 0.0, wait_s: float = 0.0
    ) -> str | None:
        try:
            async with asyncio.timeout(self._timeout_s + wait_s):
                writer = await self._connection()
                ident = next(self._ids)
                answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
                self._pending[ident] = answer
                writer.write(_frame([ident, op, key, value, ttl_s, wait_s]))
                try:
                    return await answer
                finally:
                    self._pending.pop(ident, None)
        except (OSError, TimeoutError) as exc:
            self._disconnect(type(exc).__name__)
            raise StateUnavailable(f"shared state at {self._path}: {type(exc).__name__} {exc}") from None

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                reader, self._writer = await asyncio.open_unix_connection(
                    sock=await _connect_unix(self._path), limit=_MAX_FRAME
                )
                self._reader_task = asyncio.create_task(self._read(reader), name="shared-state-reader")
            return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                ident, value, *error = await _read_frame(reader)
                answer = self._pending.get(ident)
                if answer is not None and not answer.done():
                    if error:
                        answer.set_exception(StateUnavailable(f"keeper refused: {error[0]}"))
                    else:
                        answer.set_result(value if isinstance(value, str) else None)
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError) as exc:
            self._disconnect(f"keeper connection lost: {type(exc).__name__}")

    def _disconnect(self, why: str) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(StateUnavailable(why))
        self._pending.clear()


def keeper_socket() -> tuple[socket.socket, str]:
    """A listening unix socket and its address.

    On Linux an abstract socket (no file, so a read-only root filesystem is fine); only processes of
    our own user may talk to it (the keeper checks SO_PEERCRED). Elsewhere a socket in a new private
    (0700) directory.
    """
    if sys.platform.startswith("linux"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            address = f"\0oidcproxy-state-{os.getpid()}-{secrets.token_hex(8)}"
            sock.bind(address)
            sock.listen(256)
        except OSError:
            sock.close()
            raise
        return sock, address
    directory = tempfile.mkdtemp(prefix="oidcproxy-")
    path = os.path.join(directory, "state.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(256)
    except OSError:
        sock.close()
        os.rmdir(directory)
        raise
    return sock, path


def remove_keeper_socket(sock: socket.socket, path: str) -> None:
    sock.close()
    if path.startswith("\0"):
        return  # abstract: nothing on disk
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))


def serve_keeper(
    sock: socket.socket,
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    beside: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> None:
    """The keeper process: serve one LocalState on `sock` until SIGTERM; `beside()`, if given, is a
    context that runs on the same loop for as long (the metrics listener of several workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    loop = new_loop()
    try:
        loop.run_until_complete(_keep(sock, beside or _nothing))
    finally:
        loop.close()


async def _keep(
    sock: socket.socket, beside: Callable[[], contextlib.AbstractAsyncContextManager[None]]
) -> None:
    state = LocalState()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with await start_keeper(sock, state), beside():
        await stop.wait()
    await state.close()


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


async def start_keeper(sock: socket.socket, state: LocalState) -> asyncio.Server:
    """Serve `state` to SocketState clients on the listening unix socket `sock`."""
    return await asyncio.start_unix_server(_Connection.handler(state), sock=sock, limit=_MAX_FRAME)


async def _connect_unix(address: str) -> socket.socket:
    """A connected unix socket; connected by hand since uvloop refuses abstract addresses given as str."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


def _same_user(sock: Any) -> bool:
    """Whether the peer of a unix socket runs as our user (always true where SO_PEERCRED is missing)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return True
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return bool(uid == os.getuid())


class _Connection:
    """One worker's connection to the keeper: each request runs as its own task (a get may wait)."""

    def __init__(self, state: LocalState, writer: asyncio.StreamWriter) -> None:
        self._state, self._writer = state, writer
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def handler(cls, state: LocalState) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not _same_user(writer.get_extra_info("socket")):
                writer.close()  # an abstract socket has no file mode: refuse other users here
                return
            await cls(state, writer).serve(reader)

        return handle

    async def serve(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                task = asyncio.create_task(self._answer(await _read_frame(reader)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass  # the worker went away (or spoke nonsense): drop its connection
        finally:
            for task in list(self._tasks):
                task.cancel()
            self._writer.close()

    async def _answer(self, request: list[Any]) -> None:
        ident = request[0] if request else None
        try:
            _, op, key, value, ttl_s, wait_s = request
            answer = await self._apply(str(op), str(key), str(value), float(ttl_s), float(wait_s))
            reply = [ident, answer]
        except (ValueError, TypeError) as exc:
            reply = [ident, None, f"bad request: {exc}"]
        if not self._writer.is_closing():
            self._writer.write(_frame(reply))

    async def _apply(self, op: str, key: str, value: str, ttl_s: float, wait_s: float) -> str | None:
        state = self._state
        if op == "get":
            return await state.get(key, min(wait_s, 30.0))
        if op == "add":
            return await state.add(key, value, ttl_s)
        if op == "set":
            await state.set(key, value, ttl_s)
        elif op == "delete":
            await state.delete(key)
        else:
            raise ValueError(f"unknown op {op!r}")
        return None
