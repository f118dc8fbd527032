"""State the workers of one instance share: short-lived keys with a TTL, as Redis holds them.

`SharedState` is the contract (get, add-if-absent, set, delete; every value is text with an expiry).
The refresh path uses it for one refresh per session across workers and for the refreshed session
(sealed) that requests with the old cookie get; the login callback uses it to accept a state once.
The hot path never touches it. `LocalState` holds it in this process: one worker, tests, and the
table the keeper (`keeper`) serves to several workers. Imports model only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from oidcproxy.model import Clock, system_clock

__all__ = ["LocalState", "SharedState"]


class SharedState(Protocol):
    """Text values under text keys, each with a TTL. Faults raise errors.StateUnavailable."""

    async def get(self, key: str, wait_s: float = 0.0) -> str | None:
        """The value, or None; with wait_s, waits that long for a set or delete of the key first."""

    async def add(self, key: str, value: str, ttl_s: float) -> str | None:
        """Set the key if absent and answer None; if present, answer its value (Redis SET NX GET)."""

    async def set(self, key: str, value: str, ttl_s: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


class LocalState:
    """The shared state of one process: a dict of (value, expiry), bounded in entries and characters."""

    def __init__(self, clock: Clock = system_clock, max_entries: int = 100_000, max_chars: int = 1 << 26):
        self._clock = clock
        self._items: dict[str, tuple[str, float]] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._max_entries, self._max_chars = max_entries, max_chars
        self._chars = 0
        self._sweep_at = 1024

    async def get(self, key: str, wait_s: float = 0.0) -> str | None:
        value = self._live(key)
        if value is not None or wait_s <= 0:
            return value
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, set()).add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await waiter
        finally:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiters[key]
        return self._live(key)

    async def add(self, key: str, value: str, ttl_s: float) -> str | None:
        current = self._live(key)
        if current is None:
            self._put(key, value, ttl_s)
        return current

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self._put(key, value, ttl_s)

    async def delete(self, key: str) -> None:
        self._drop(key)
        self._wake(key)

    async def close(self) -> None:
        for waiting in self._waiters.values():
            for waiter in waiting:
                waiter.cancel()

    def _live(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            self._drop(key)
            return None
        return item[0]

    def _put(self, key: str, value: str, ttl_s: float) -> None:
        self._drop(key)
        self._items[key] = (value, self._clock() + ttl_s)
        self._chars += len(key) + len(value)
        if len(self._items) >= self._sweep_at:
            now = self._clock()
            for stale in [k for k, (_, until) in self._items.items() if until <= now]:
                self._drop(stale)
            self._sweep_at = max(1024, 2 * len(self._items))
        while len(self._items) > self._max_entries or self._chars > self._max_chars:
            self._drop(next(iter(self._items)))  # the oldest write goes first
        self._wake(key)

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._chars -= len(key) + len(item[0])

    def _wake(self, key: str) -> None:
        for waiter in self._waiters.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)
