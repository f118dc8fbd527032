"""Session stores: the SessionStore protocol, the cookie-backed store and its cache of opened sessions.

`SessionStore` is the one interface the handlers and the gate call. A request's session is found in
two steps, so that the hot path costs one dict lookup whatever the store:

    peek(header, cookies)   sync, no I/O: the session, None (no valid session), or MISS
    fetch(header, cookies)  async, only after MISS: asks the server side (Redis); a fault raises
                            errors.StoreUnavailable, which is never "no session"

then `save` and `clear` answer the Set-Cookie specs to apply, and `end_sessions` ends every session of
a subject or of a provider session id (revocation; the cookie store cannot, it keeps nothing).

The cookie store keeps the whole session in the browser, sealed by the codec and split over as many
cookies as it needs; it never answers MISS, and a cache hit does no crypto. Imports only model and the
rest of `sessions`.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from oidcproxy.model import Clock, Session
from oidcproxy.sessions.codec import SessionCodec
from oidcproxy.sessions.cookies import (
    CHUNK_SIZE,
    CookiePolicy,
    SetCookie,
    chunk_names,
    join_cookie,
    split_cookie,
)
from oidcproxy.sessions.keys import KeyRing

__all__ = ["MISS", "CookieJar", "CookieSessionStore", "Miss", "SessionCache", "SessionStore"]

CookieJar = Callable[[], Mapping[str, str]]
"""The request's cookies, parsed only when called (aiohttp parses the header once per request)."""


class Miss(enum.Enum):
    """`peek` could not answer without I/O: call `fetch`."""

    MISS = "miss"


MISS: Final = Miss.MISS

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
    """Where sessions live. Every async method raises errors.StoreUnavailable on a store fault."""

    def peek(self, header: str | None, cookies: CookieJar) -> Session | Miss | None:
        """The session of a Cookie header without I/O, None when there is none, MISS to `fetch`."""

    async def fetch(self, header: str | None, cookies: CookieJar) -> Session | None:
        """The session after a MISS (a round trip to the store); None when there is none."""

    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[SetCookie]:
        """Store the session (sealed with the first secret); the cookies the browser must now hold."""

    async def clear(self, cookies: Mapping[str, str]) -> list[SetCookie]:
        """End the request's session here and in the store; the cookies that delete it."""

    async def end_sessions(self, *, subject: str = "", sid: str = "") -> int:
        """End every stored session of a subject or a provider session id; how many ended."""

    async def close(self) -> None: ...


class CookieSessionStore:
    """The whole session lives in the browser, sealed and split over as many cookies as it needs."""

    __slots__ = ("_by_header", "_cache", "_clock", "_codec", "_policy", "codec", "max_chunks", "warned")

    def __init__(
        self,
        keys: KeyRing,
        policy: CookiePolicy,
        clock: Clock,
        cache: SessionCache | None = None,
        *,
        max_chunks: int = 0,
    ) -> None:
        self._codec = self.codec = SessionCodec(keys, policy.name)
        self.max_chunks = max_chunks  # above it, one warning naming the fix (no store to move to)
        self.warned = False
        self._policy = policy
        self._clock = clock
        self._cache = SessionCache() if cache is None else cache
        # Keyed by the whole Cookie header as the browser sent it: a hit skips parsing the header and
        # joining the chunks, which for a 30 KB session cost more than the rest of the request.
        self._by_header = SessionCache(max_entries=self._cache.max_entries)

    def peek(self, header: str | None, cookies: CookieJar) -> Session | Miss | None:
        return self.open_header(header, cookies)

    async def fetch(self, header: str | None, cookies: CookieJar) -> Session | None:
        return self.open_header(header, cookies)

    async def end_sessions(self, *, subject: str = "", sid: str = "") -> int:
        return 0  # nothing is kept here: a cookie session ends when it expires or its browser drops it

    async def close(self) -> None:
        return None

    def open_header(self, header: str | None, cookies: CookieJar) -> Session | None:
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
        return self.save_sealed(session, self._codec.encode(session), cookies)

    def save_sealed(self, session: Session, sealed: str, cookies: Mapping[str, str]) -> list[SetCookie]:
        """The cookies of a session the codec already sealed (the autopilot measured it first)."""
        if self.max_chunks and not self.warned and -(-len(sealed) // CHUNK_SIZE) > self.max_chunks:
            self.warned = True
            log.warning(
                "a session needs %d cookies, more than --cookie-max-chunks=%d: NGINX auth_request passes "
                "only one Set-Cookie and browsers cap the Cookie header. Fix: configure Redis "
                "(--redis-connection-url), and sessions this large move there by themselves "
                "(--session-store-type=cookie keeps the small ones in the cookie)",
                -(-len(sealed) // CHUNK_SIZE),
                self.max_chunks,
            )
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
