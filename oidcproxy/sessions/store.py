"""Session stores: the SessionStore protocol, the cookie-backed store and its cache of opened sessions.

The cookie store keeps the whole session in the browser, sealed by the codec and split over as many
cookies as it needs; opening one on the hot path does no I/O, and a cache hit no crypto. Imports
only model and the rest of `sessions`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Protocol

from oidcproxy.model import Clock, Session
from oidcproxy.sessions.codec import SessionCodec
from oidcproxy.sessions.cookies import CookiePolicy, SetCookie, chunk_names, join_cookie, split_cookie
from oidcproxy.sessions.keys import KeyRing

__all__ = ["CookieSessionStore", "SessionCache", "SessionStore"]

log = logging.getLogger("oidcproxy.session")


class SessionCache:
    """A bounded LRU of opened sessions, keyed by the exact sealed cookie value.

    A hit skips the AEAD open, the inflate and the JSON parse; it still answers None once the session
    has expired, since expiry is checked against the clock on every lookup. Bounded both in entries and
    in the characters of the sealed values it keeps (large sessions are ~40 KB each).
    """

    __slots__ = ("_chars", "_entries", "_max_chars", "max_entries")

    def __init__(self, max_entries: int = 4096, max_chars: int = 16 * 1024 * 1024) -> None:
        self._entries: OrderedDict[str, Session] = OrderedDict()
        self.max_entries = max_entries
        self._max_chars = max_chars
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sealed: str, now: float) -> Session | None:
        session = self._entries.get(sealed)
        if session is None:
            return None
        if session.expired(now):
            self._drop(sealed)
            return None
        self._entries.move_to_end(sealed)
        return session

    def put(self, sealed: str, session: Session) -> None:
        if self.max_entries <= 0 or len(sealed) > self._max_chars or sealed in self._entries:
            return
        self._entries[sealed] = session
        self._chars += len(sealed)
        while len(self._entries) > self.max_entries or self._chars > self._max_chars:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, sealed: str) -> None:
        del self._entries[sealed]
        self._chars -= len(sealed)


class SessionStore(Protocol):
    async def load(self, cookies: Mapping[str, str]) -> Session | None: ...
    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[SetCookie]: ...
    async def clear(self, cookies: Mapping[str, str]) -> list[SetCookie]: ...


class CookieSessionStore:
    """The whole session lives in the browser, sealed and split over as many cookies as it needs."""

    __slots__ = ("_by_header", "_cache", "_clock", "_codec", "_policy")

    def __init__(
        self, keys: KeyRing, policy: CookiePolicy, clock: Clock, cache: SessionCache | None = None
    ) -> None:
        self._codec = SessionCodec(keys, policy.name)
        self._policy = policy
        self._clock = clock
        self._cache = SessionCache() if cache is None else cache
        # Keyed by the whole Cookie header as the browser sent it: a hit skips parsing the header and
        # joining the chunks, which for a 30 KB session cost more than the rest of the request.
        self._by_header = SessionCache(max_entries=self._cache.max_entries)

    def open_header(self, header: str | None, cookies: Callable[[], Mapping[str, str]]) -> Session | None:
        """`open` for a request: the raw Cookie header first, `cookies()` parsed only on a miss."""
        if not header:
            return None
        cached = self._by_header.get(header, self._clock())
        if cached is not None:
            return cached
        session = self.open(cookies())
        if session is not None:
            self._by_header.put(header, session)
        return session

    def open(self, cookies: Mapping[str, str]) -> Session | None:
        """Synchronous load for the hot path: no I/O happens here, and a cache hit does no crypto."""
        sealed = join_cookie(self._policy.name, cookies)
        if sealed is None:
            return None
        now = self._clock()
        cached = self._cache.get(sealed, now)
        if cached is not None:
            return cached
        session = self._codec.decode(sealed)
        if session is None:
            log.debug("session cookie ignored: tampered, truncated or sealed with another secret")
            return None
        if session.expired(now):
            log.debug("session cookie ignored: expired")
            return None
        self._cache.put(sealed, session)
        return session

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        return self.open(cookies)

    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[SetCookie]:
        sealed = self._codec.encode(session)
        max_age = max(1, int(session.expires_at - self._clock()))
        out = [
            SetCookie.make(self._policy, name, value, max_age)
            for name, value in split_cookie(self._policy.name, sealed)
        ]
        written = {c.name for c in out}
        stale = [n for n in chunk_names(self._policy.name, cookies) if n not in written]
        return out + [SetCookie.make(self._policy, n, "", 0) for n in stale]

    async def clear(self, cookies: Mapping[str, str]) -> list[SetCookie]:
        names = chunk_names(self._policy.name, cookies) or [self._policy.name]
        return [SetCookie.make(self._policy, n, "", 0) for n in names]
