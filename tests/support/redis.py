"""Real Redis from Debian's packages (`redis-server`, `redis-sentinel`, `redis-tools`, installed by
scripts/setup.sh) on 127.0.0.1 free ports, in a temporary directory, for the tests and the bench.

Owns the processes (start, wait until they answer, stop, restart on the same port, pause) and nothing
else. Imports nothing from `oidcproxy`; no pytest here (the fixtures are in `redis_fixtures.py`), so
plain code such as the bench can use the same context managers:

    with start_redis(password="pw", tls=True, persist=False) as r:
        r.url, r.port, r.tls.ca_path     # rediss://:pw@127.0.0.1:PORT/0 with tls=True
        r.stop(); r.start()              # "Redis stopped -> 503, recovery when it returns"
        r.restart()                      # same port; data survives only with persist=True
        with r.paused(): ...             # SIGSTOP/SIGCONT: a Redis that accepts and never answers
    with start_sentinel() as s:          # a master, a replica, three sentinels, quorum 2
        s.sentinel_addresses, s.master_name, s.master_address()
        s.failover()                     # SENTINEL FAILOVER; kill=True kills the master instead
    with start_cluster() as c:           # three masters, slots spread by `redis-cli --cluster create`
        c.startup_nodes, c.nodes[0].stop()

Nothing is persisted unless `persist=True` (then an AOF with fsync always, so a restart keeps data).
The blocking helpers (`failover`, `restart`) take up to a few seconds: from an async test with a
server in the same loop, call them through `asyncio.to_thread` so the loop keeps serving.

redis-py defaults the session store must override (redis 8.1.0, read in redis/_defaults.py,
redis/asyncio/client.py, redis/asyncio/cluster.py; the same for `Redis.from_url`):
- `redis.asyncio.Redis`: socket_timeout=5 s, socket_connect_timeout=5 s (= socket_timeout),
  retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1), retries=10) on ConnectionError and
  TimeoutError. One call against a Redis that accepts and does not answer can therefore take
  11 x 5 s plus backoff, about a minute; against a stopped Redis, 11 refused connects plus about
  5 s of backoff. Pass `retry=Retry(NoBackoff(), 0)` (or a deliberate small count) and timeouts of
  about 1 s. `health_check_interval=0`, socket_keepalive=True (idle 30 s, interval 5 s, 3 probes).
  Measured here: one GET with all defaults against a stopped Redis took 3.8 s; against a paused
  one with socket_timeout=0.2 and the default retry, 6.2 s.
- `redis.asyncio.Sentinel`: connections to the sentinels take the `socket_*` kwargs only (unless
  `sentinel_kwargs` is given, which then also needs the sentinel password); `master_for()` clients get
  the Redis defaults above. A READONLY answer from a demoted master becomes a ConnectionError, but
  the retry reconnects to the connection's old host, not to the master the sentinels name
  (connect_check_health bypasses SentinelManagedConnection.connect: redis/redis-py#3874, open), so
  every retry fails the same way; the next command, on a connection from the pool, asks the
  sentinels. Sentinel itself disconnects the demoted master's clients (CLIENT KILL), which avoids
  this; `failover()` does the same.
- `redis.asyncio.cluster.RedisCluster`: socket_timeout=5 s, socket_connect_timeout=5 s, retry =
  Retry(ExponentialWithJitterBackoff(0.01, 1), retries=10) at the cluster level (per-node
  connections do not retry), reinitialize_steps=5 (topology refresh after MOVED).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "RedisCluster",
    "RedisError",
    "RedisSentinel",
    "RedisServer",
    "RedisTLS",
    "free_port",
    "redis_installed",
    "start_cluster",
    "start_redis",
    "start_sentinel",
]

HOST = "127.0.0.1"
_START_TIMEOUT_S = 15.0


class RedisError(RuntimeError):
    """A Redis process did not start, or a topology did not reach the state a helper waits for."""


def redis_installed() -> bool:
    return all(shutil.which(b) for b in ("redis-server", "redis-sentinel", "redis-cli"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisError(
            f"{name} is not installed; bash scripts/setup.sh installs it (apt-get install {name})"
        )
    return path


def _wait(what: str, check: Callable[[], bool], timeout: float, detail: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RedisError(f"{what} not reached within {timeout:.0f} s\n{detail()}")
        time.sleep(0.02)


@dataclass(frozen=True, slots=True)
class RedisTLS:
    """PEM files from trustme: the CA a client trusts (`--redis-ca-path`), and the server's pair."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    @classmethod
    def make(cls, directory: Path) -> RedisTLS:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        tls = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        ca.cert_pem.write_to_path(str(tls.ca_path))
        cert.private_key_pem.write_to_path(str(tls.key_path))
        for i, pem in enumerate(cert.cert_chain_pems):
            pem.write_to_path(str(tls.cert_path), append=i > 0)
        return tls

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


class RedisServer:
    """One redis-server (or redis-sentinel) process with its config file in `directory`.

    The port stays the same across `stop()`/`start()`; the config file is rewritten by the process
    itself when Sentinel reconfigures it, so a restarted node keeps its role.
    """

    def __init__(
        self,
        directory: Path,
        config: Sequence[str],
        *,
        port: int,
        binary: str = "redis-server",
        username: str | None = None,
        password: str | None = None,
        tls: RedisTLS | None = None,
        unix_socket: Path | None = None,
    ) -> None:
        self.directory = directory
        self.port = port
        self.username = username
        self.password = password
        self.tls = tls
        self.unix_socket = unix_socket
        self.config_path = directory / "redis.conf"
        self.config_path.write_text("\n".join(config) + "\n")
        self._binary = _binary(binary)
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    host = HOST

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def url(self) -> str:
        """redis:// or rediss:// URL with the credentials, as `--redis-connection-url` takes it."""
        scheme = "rediss" if self.tls else "redis"
        user = self.username or ""
        auth = f"{user}:{self.password}@" if self.password else ""
        return f"{scheme}://{auth}{HOST}:{self.port}/0"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis.Redis / redis.asyncio.Redis reaching this server."""
        kwargs: dict[str, Any] = {"host": HOST, "port": self.port}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls.ca_path))
        return kwargs

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        out = (self.directory / "process.out").open("ab")
        with out:
            self._process = subprocess.Popen(
                [self._binary, str(self.config_path)], cwd=self.directory, stdout=out, stderr=out
            )
        self._paused = False
        _wait(f"{self} answering PING", self._answers, _START_TIMEOUT_S, self.log_tail)

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown) or SIGKILL (a crash); waits for the process to exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if self._paused:
            process.send_signal(signal.SIGCONT)
            self._paused = False
        process.kill() if kill else process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, Redis never answers (a slow Redis)."""
        if self._process is None:
            raise RedisError(f"{self} is not running")
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._process is not None and self._paused:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def admin(self, **overrides: Any) -> redis.Redis:
        """A synchronous client for setup and checks: no retries, short timeouts, str replies."""
        kwargs = self.client_kwargs()
        kwargs.update(
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            **overrides,
        )
        return redis.Redis(**kwargs)

    def info(self, section: str) -> dict[str, Any]:
        with self.admin() as client:
            return dict(client.info(section))

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("process.out", "redis.log"):
            path = self.directory / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _answers(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            raise RedisError(
                f"{self} exited with {self._process and self._process.returncode}\n{self.log_tail()}"
            )
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.create_connection(self.address, timeout=1.0))
            if self.tls:
                sock = stack.enter_context(self.tls.context().wrap_socket(sock, server_hostname=HOST))
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
        # -NOAUTH: up, and wants a password; -LOADING: still reading its AOF.
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def __repr__(self) -> str:
        return f"<{Path(self._binary).name} {HOST}:{self.port} in {self.directory}>"


def _server_config(
    directory: Path,
    port: int,
    *,
    username: str | None,
    password: str | None,
    tls: RedisTLS | None,
    unix_socket: Path | None,
    persist: bool,
) -> list[str]:
    lines = [
        f"bind {HOST}",
        f"dir {directory}",
        "logfile redis.log",
        "daemonize no",
        'save ""',
        f"appendonly {'yes' if persist else 'no'}",
        "appendfsync always",
        "repl-diskless-sync-delay 0",  # Redis 7 waits 5 s for more replicas before a full sync
    ]
    if tls:
        lines += [
            "port 0",  # TLS only: a plaintext client cannot fall back
            f"tls-port {port}",
            f"tls-cert-file {tls.cert_path}",
            f"tls-key-file {tls.key_path}",
            f"tls-ca-cert-file {tls.ca_path}",
            "tls-auth-clients no",
        ]
    else:
        lines.append(f"port {port}")
    if unix_socket:
        lines += [f"unixsocket {unix_socket}", "unixsocketperm 700"]
    if username and password:
        lines += [f"user {username} on >{password} ~* &* +@all", "user default off"]
    elif password:
        lines += [f"requirepass {password}", f"masterauth {password}"]
    return lines


@contextlib.contextmanager
def _directory(directory: Path | None) -> Iterator[Path]:
    """The given directory, or a short-lived one (short path: unix sockets are limited to 107 bytes)."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="redis-") as name:
        yield Path(name)


@contextlib.contextmanager
def start_redis(
    directory: Path | None = None,
    *,
    password: str | None = None,
    username: str | None = None,
    tls: bool | RedisTLS = False,
    unix_socket: bool = False,
    persist: bool = False,
) -> Iterator[RedisServer]:
    """A standalone redis-server. `username` with `password`: an ACL user, the default user off.
    `tls=True` makes a trustme CA (or pass a `RedisTLS`); the port then speaks TLS only."""
    with _directory(directory) as where:
        server = _standalone(
            where, password=password, username=username, tls=tls, unix_socket=unix_socket, persist=persist
        )
        try:
            server.start()
            yield server
        finally:
            server.stop()


def _standalone(
    directory: Path,
    *,
    password: str | None,
    username: str | None,
    tls: bool | RedisTLS,
    unix_socket: bool,
    persist: bool,
) -> RedisServer:
    if username and not password:
        raise ValueError("an ACL user needs a password")
    tls_files = RedisTLS.make(directory) if tls is True else tls or None
    sock = directory / "redis.sock" if unix_socket else None
    port = free_port()
    config = _server_config(
        directory,
        port,
        username=username,
        password=password,
        tls=tls_files,
        unix_socket=sock,
        persist=persist,
    )
    return RedisServer(
        directory, config, port=port, username=username, password=password, tls=tls_files, unix_socket=sock
    )


# --- Sentinel ---------------------------------------------------------------------------------------


class RedisSentinel:
    """A master, a replica and three sentinels (quorum 2) watching `master_name`."""

    def __init__(
        self,
        master_name: str,
        nodes: list[RedisServer],
        sentinels: list[RedisServer],
        sentinel_password: str | None,
    ) -> None:
        self.master_name = master_name
        self.nodes = nodes
        self.sentinels = sentinels
        self.sentinel_password = sentinel_password

    @property
    def password(self) -> str | None:
        return self.nodes[0].password

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [s.address for s in self.sentinels]

    @property
    def sentinel_urls(self) -> list[str]:
        """As `--redis-sentinel-connection-urls` takes them."""
        return [f"redis://{HOST}:{s.port}" for s in self.sentinels]

    def master_address(self, sentinel: int = 0) -> tuple[str, int]:
        with self.sentinels[sentinel].admin() as client:
            host, port = client.sentinel_get_master_addr_by_name(self.master_name)
        return (str(host), int(port))

    def node_at(self, address: tuple[str, int]) -> RedisServer:
        return next(n for n in self.nodes if n.address == address)

    def master(self) -> RedisServer:
        return self.node_at(self.master_address())

    def replicas(self) -> list[RedisServer]:
        master = self.master()
        return [n for n in self.nodes if n is not master]

    def failover(self, *, kill: bool = False, timeout: float = 30.0) -> tuple[str, int]:
        """Move the master role to a replica and wait until every sentinel names it; answers it.

        kill=False: `SENTINEL FAILOVER` (a planned switch). Sentinel demotes the old master only
        8 s after the switch (+convert-to-slave; until then clients still connected to it can write
        there). This helper demotes it at once with the commands Sentinel would send (REPLICAOF,
        CONFIG REWRITE, CLIENT KILL of normal and pubsub clients) and waits until it is synced.
        kill=True: SIGKILL the master; the sentinels find it down (down-after 1 s), agree (quorum
        2) and elect a leader. The old node stays down; `rejoin(node)` brings it back as a
        replica (plain `node.start()` too, but Sentinel demotes it only 8 s later).
        Before starting, waits until the sentinels see a synced replica (else NOGOODSLAVE).
        """
        self.wait_settled(timeout)
        old = self.master_address()
        if kill:
            self.node_at(old).stop(kill=True)
        else:
            with self.sentinels[0].admin() as client:
                client.sentinel_failover(self.master_name)
        _wait("a new master named by every sentinel", lambda: self._switched(old), timeout, self._describe)
        new = self.master_address()
        if not kill:
            _demote(self.node_at(old), new)
            _wait(
                "the old master synced as a replica",
                lambda: self._synced(self.node_at(old), new),
                timeout,
                self._describe,
            )
        return new

    def rejoin(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Start a stopped node (say the master `failover(kill=True)` killed) as a synced replica of
        the current master. Sentinel would demote it itself 8 s after seeing it; this does it at
        once. The sentinels list it as a replica at their next INFO poll (every 10 s): the next
        `failover()` waits for that."""
        node.start()
        master = self.master_address()
        _demote(node, master)
        _wait("the node synced as a replica", lambda: self._synced(node, master), timeout, self._describe)

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Until the sentinels agree on the master and see every other running node as a replica
        (the view SENTINEL FAILOVER picks a replica from), and each of those nodes is synced.
        Instant on a fresh topology; after a failover or `rejoin()` the sentinels learn of the
        demoted node at their next INFO poll, so this can take up to about 10 s."""
        _wait("sentinels seeing a synced replica set", self._settled, timeout, self._describe)

    def _switched(self, old: tuple[str, int]) -> bool:
        addresses = {self.master_address(i) for i in range(len(self.sentinels))}
        if len(addresses) != 1 or old in addresses:
            return False
        return bool(self.node_at(addresses.pop()).info("replication")["role"] == "master")

    def _settled(self) -> bool:
        master = self.master_address()
        if any(self.master_address(i) != master for i in range(len(self.sentinels))):
            return False
        expected = {n.address for n in self.nodes if n.running and n.address != master}
        for sentinel in self.sentinels:
            with sentinel.admin() as client:
                state = client.sentinel_master(self.master_name)
                seen = client.sentinel_slaves(self.master_name)
            if state["num-other-sentinels"] != len(self.sentinels) - 1:
                return False
            ok = {
                (r["ip"], int(r["port"]))
                for r in seen
                if r["role-reported"] == "slave"  # a fresh INFO since the demotion
                and not (r["is_sdown"] or r["is_disconnected"])
            }
            if not expected <= ok:
                return False
        return all(self._synced(self.node_at(a), master) for a in expected)

    def _synced(self, node: RedisServer, master: tuple[str, int]) -> bool:
        info = node.info("replication")
        return bool(info.get("master_port") == master[1] and info.get("master_link_status") == "up")

    def _describe(self) -> str:
        parts = []
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError, OSError):
                parts.append(f"sentinel {s.port}: master {self.master_address(self.sentinels.index(s))}")
        return "\n".join(parts + [f"--- {s}\n{s.log_tail(8)}" for s in self.sentinels])


def _demote(node: RedisServer, master: tuple[str, int]) -> None:
    """What Sentinel sends to convert an instance to a replica: the clients are disconnected, so
    their next command asks the sentinels again instead of meeting READONLY."""
    with node.admin() as client, client.pipeline(transaction=True) as pipe:
        pipe.replicaof(*master).config_rewrite()
        pipe.client_kill_filter(_type="normal").client_kill_filter(_type="pubsub")
        pipe.execute()


def _sentinel_config(
    directory: Path,
    port: int,
    *,
    myid: str,
    peers: list[tuple[int, str]],
    master_name: str,
    master_port: int,
    replica_ports: list[int],
    password: str | None,
    sentinel_password: str | None,
) -> list[str]:
    # Known peers and replicas are written up front (with fixed ids), so the sentinels need not wait
    # for each other's hello messages (every 2 s) before a failover can be agreed.
    lines = [
        f"bind {HOST}",
        f"port {port}",
        f"dir {directory}",
        "logfile redis.log",
        "daemonize no",
        f"sentinel myid {myid}",
        f"sentinel monitor {master_name} {HOST} {master_port} 2",
        f"sentinel down-after-milliseconds {master_name} 1000",
        # A split leader vote is retried after 2 x failover-timeout.
        f"sentinel failover-timeout {master_name} 2000",
        f"sentinel parallel-syncs {master_name} 1",
    ]
    lines += [f"sentinel known-replica {master_name} {HOST} {p}" for p in replica_ports]
    lines += [f"sentinel known-sentinel {master_name} {HOST} {p} {i}" for p, i in peers]
    if password:
        lines.append(f"sentinel auth-pass {master_name} {password}")
    if sentinel_password:
        lines.append(f"requirepass {sentinel_password}")
    return lines


@contextlib.contextmanager
def start_sentinel(
    directory: Path | None = None,
    *,
    master_name: str = "mymaster",
    password: str | None = None,
    sentinel_password: str | None = None,
    replicas: int = 1,
    sentinels: int = 3,
) -> Iterator[RedisSentinel]:
    """A master, `replicas` replicas (synced before the sentinels start) and `sentinels` sentinels."""
    with _directory(directory) as where, contextlib.ExitStack() as stack:
        nodes: list[RedisServer] = []
        for i in range(1 + replicas):
            node_dir = where / f"node{i}"
            node_dir.mkdir()
            node = _standalone(
                node_dir, password=password, username=None, tls=False, unix_socket=False, persist=False
            )
            if i > 0:
                with node.config_path.open("a") as f:
                    f.write(f"replicaof {HOST} {nodes[0].port}\n")
            stack.callback(node.stop)
            node.start()
            nodes.append(node)
        master = nodes[0]
        _wait(
            "replicas synced",
            lambda: all(n.info("replication")["master_link_status"] == "up" for n in nodes[1:]),
            _START_TIMEOUT_S,
            master.log_tail,
        )
        ids = [(free_port(), secrets.token_hex(20)) for _ in range(sentinels)]
        procs: list[RedisServer] = []
        for i, (port, myid) in enumerate(ids):
            sdir = where / f"sentinel{i}"
            sdir.mkdir()
            config = _sentinel_config(
                sdir,
                port,
                myid=myid,
                peers=[p for p in ids if p[0] != port],
                master_name=master_name,
                master_port=master.port,
                replica_ports=[n.port for n in nodes[1:]],
                password=password,
                sentinel_password=sentinel_password,
            )
            proc = RedisServer(sdir, config, port=port, binary="redis-sentinel", password=sentinel_password)
            stack.callback(proc.stop)
            proc.start()
            procs.append(proc)
        topology = RedisSentinel(master_name, nodes, procs, sentinel_password)
        topology.wait_settled(_START_TIMEOUT_S)
        yield topology


# --- Cluster ----------------------------------------------------------------------------------------


class RedisCluster:
    """Masters created with `redis-cli --cluster create`, no replicas; slots split evenly."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes

    @property
    def password(self) -> str | None:
        return self.nodes[0].password

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [n.address for n in self.nodes]

    @property
    def urls(self) -> list[str]:
        """As `--redis-cluster-connection-urls` takes them."""
        return [n.url for n in self.nodes]

    def wait_ok(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Until every running node says cluster_state:ok and knows every slot and node."""
        _wait("cluster_state:ok on every node", self._ok, timeout, self._describe)

    def _ok(self) -> bool:
        for node in self.nodes:
            if not node.running:
                continue
            with node.admin() as client:
                info = client.cluster("INFO")
            if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != 16384:
                return False
            if int(info["cluster_known_nodes"]) != len(self.nodes):
                return False
        return True

    def _describe(self) -> str:
        return "\n".join(f"--- {n}\n{n.log_tail(8)}" for n in self.nodes)


@contextlib.contextmanager
def start_cluster(
    directory: Path | None = None, *, masters: int = 3, password: str | None = None
) -> Iterator[RedisCluster]:
    with _directory(directory) as where, contextlib.ExitStack() as stack:
        nodes: list[RedisServer] = []
        for i in range(masters):
            node_dir = where / f"node{i}"
            node_dir.mkdir()
            node = _standalone(
                node_dir, password=password, username=None, tls=False, unix_socket=False, persist=False
            )
            with node.config_path.open("a") as f:
                # The bus port is set explicitly: port + 10000 may be taken or above 65535.
                f.write(
                    f"cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-port {free_port()}\n"
                    "cluster-node-timeout 2000\n"
                )
            stack.callback(node.stop)
            node.start()
            nodes.append(node)
        _create_cluster(nodes, password)
        cluster = RedisCluster(nodes)
        cluster.wait_ok()
        yield cluster


def _create_cluster(nodes: list[RedisServer], password: str | None) -> None:
    command = [_binary("redis-cli"), "--cluster", "create", *(f"{HOST}:{n.port}" for n in nodes)]
    command += ["--cluster-replicas", "0", "--cluster-yes"]
    env = dict(os.environ)
    if password:
        env["REDISCLI_AUTH"] = password
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
    if done.returncode != 0:
        raise RedisError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")
