"""One suite for every SharedState (style C11): in this process, and a worker's client of the keeper
over a real unix socket. Issue "Sessions on the server" adds Redis to the parameters."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import socket
from collections.abc import AsyncIterator

import pytest

from oidcproxy.coordination import (
    LocalState,
    SharedState,
    SocketState,
    keeper_socket,
    remove_keeper_socket,
    serve_keeper,
    start_keeper,
)
from oidcproxy.errors import StateUnavailable
from oidcproxy.model import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture(params=["local", "socket"])
async def state(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[SharedState]:
    if request.param == "local":
        local = LocalState(clock)
        yield local
        await local.close()
        return
    sock, path = keeper_socket()
    kept = LocalState(clock)
    server = await start_keeper(sock, kept)
    client = SocketState(path)
    try:
        yield client
    finally:
        await client.close()
        server.close()
        await kept.close()
        remove_keeper_socket(sock, path)


async def test_add_sets_only_when_absent_and_answers_what_is_there(state: SharedState) -> None:
    assert await state.add("k", "first", 10) is None
    assert await state.add("k", "second", 10) == "first"
    assert await state.get("k") == "first"


async def test_set_overwrites_and_delete_removes(state: SharedState) -> None:
    await state.set("k", "a", 10)
    await state.set("k", "b", 10)
    assert await state.get("k") == "b"
    await state.delete("k")
    assert await state.get("k") is None
    assert await state.add("k", "c", 10) is None


async def test_values_expire_after_their_ttl(state: SharedState, clock: FakeClock) -> None:
    await state.set("k", "v", 30)
    clock.advance(29)
    assert await state.get("k") == "v"
    clock.advance(1)
    assert await state.get("k") is None
    assert await state.add("k", "again", 30) is None


async def test_a_waiting_get_wakes_when_the_value_is_set(state: SharedState) -> None:
    waiting = asyncio.create_task(state.get("result", wait_s=20))
    await asyncio.sleep(0)  # let it reach the store before the set
    await state.set("other", "x", 10)
    await state.set("result", "done", 10)
    async with asyncio.timeout(10):  # bounded: it answers on the set, long before wait_s
        assert await waiting == "done"
    assert await state.get("missing", wait_s=0.01) is None


async def test_large_values_round_trip(state: SharedState) -> None:
    sealed = "x" * 200_000  # a sealed session with many groups
    await state.set("big", sealed, 10)
    assert await state.get("big") == sealed


def _keeper_process(sock: socket.socket) -> multiprocessing.process.BaseProcess:
    """The keeper as the supervisor runs it: a forked process serving the socket made before."""
    process = multiprocessing.get_context("fork").Process(
        target=serve_keeper, args=(sock, asyncio.new_event_loop), daemon=True
    )
    process.start()
    return process


async def test_a_restarted_keeper_is_reached_again_and_a_missing_one_fails_closed() -> None:
    sock, path = keeper_socket()
    client = SocketState(path, timeout_s=2)
    keeper = _keeper_process(sock)
    try:
        assert await client.add("login/x", "", 60) is None
        assert await client.add("login/x", "", 60) == ""
        keeper.kill()
        keeper.join()
        with pytest.raises(StateUnavailable):  # the callback answers 503, never accepts twice
            await client.add("login/x", "", 60)
        keeper = _keeper_process(sock)  # the supervisor restarts it on the same socket
        assert await client.add("login/y", "", 60) is None  # reconnected (the old state is gone)
    finally:
        keeper.kill()
        keeper.join()
        await client.close()
        remove_keeper_socket(sock, path)


async def test_keeper_socket_is_abstract_and_refuses_other_users(clock: FakeClock) -> None:
    """Nothing on disk (a read-only root works), and since an abstract socket has no file mode, the
    keeper itself refuses a peer of another user: here a real client process run as `nobody`."""
    import os
    import shutil
    import subprocess
    import sys

    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run a client as another user")
    sock, path = keeper_socket()
    assert path.startswith("\0")
    kept = LocalState(clock)
    server = await start_keeper(sock, kept)
    await kept.set("secret", "sealed-value", 60)
    probe = (
        "import socket,struct,json,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.connect('\\0'+sys.argv[1])\n"
        "body=json.dumps([1,'get','secret','',0,0]).encode()\n"
        "try:\n"
        "    s.sendall(struct.pack('>I',len(body))+body); print(repr(s.recv(100)))\n"
        "except OSError:\n"
        "    print('closed')\n"
    )
    try:
        mine = await asyncio.create_subprocess_exec(
            sys.executable, "-c", probe, path[1:], stdout=subprocess.PIPE
        )
        theirs = await asyncio.create_subprocess_exec(
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            sys.executable, "-c", probe, path[1:], stdout=subprocess.PIPE,
        )  # fmt: skip
        assert b"sealed-value" in (await mine.communicate())[0]  # the probe speaks the real protocol
        assert (await theirs.communicate())[0].strip() in (b"b''", b"closed")  # no answer
    finally:
        server.close()
        await kept.close()
        remove_keeper_socket(sock, path)
