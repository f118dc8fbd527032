"""What the workers of one instance (and later the replicas) must agree on.

    state   the SharedState contract (text keys with a TTL) and LocalState, its in-process table
    keeper  the keeper process serving one LocalState to every worker, and SocketState, its client
    redis   RedisState: the same on Redis, shared by every replica (standalone, Sentinel, Cluster)
    revocation  the revocation list (sid/sub, time) in the shared state, with a local copy per process

Refresh and login depend on the SharedState protocol only, never on how it is held. Imports model
and errors.
"""

from __future__ import annotations

from oidcproxy.coordination.keeper import (
    SocketState,
    keeper_socket,
    remove_keeper_socket,
    serve_keeper,
    start_keeper,
)
from oidcproxy.coordination.redis import RedisState
from oidcproxy.coordination.revocation import Revocations
from oidcproxy.coordination.state import LocalState, SharedState

__all__ = [
    "LocalState",
    "RedisState",
    "Revocations",
    "SharedState",
    "SocketState",
    "keeper_socket",
    "remove_keeper_socket",
    "serve_keeper",
    "start_keeper",
]
