"""The Redis session store: a small ticket cookie in the browser, the session sealed in Redis.

The cookie holds a ticket, `t.` + the key ring's seal of (a random 16-byte id, a random 32-byte key):
about 110 characters whatever the session's size, sealed with the first cookie secret and opened by
any (rotation, like the cookie store). Redis holds, under `<prefix>s:<id>`, the session as the codec
seals it, with the ticket's key: a dump of Redis shows no email, group or token, and only the
ticket's holder can open it. The entry expires with the session. Two indexes let a sign-out end
every session of a subject or of a provider session id: sets `<prefix>sub:<tag>` and
`<prefix>sid:<tag>` of ids, where the tag is an HMAC of the value under the cookie secret, so the
indexes name nobody either.

Hot path: `peek` answers from a local cache keyed by the Cookie header for --session-cache-ttl, so a
steady session costs one Redis GET per few seconds per replica; that TTL is also how long a revoked
session can still pass here. Every Redis call is bounded by `timeout_s`; a fault is logged, counted
in `failures`, and raised as StoreUnavailable (503), never answered as "no session".

A save always writes a new ticket: a ticket planted in the browser before a login never names the
new session (fixation), and the entry of the ticket it replaces expires `_REPLACED_S` later, so
requests already on their way with it still pass. Imports model, errors, redisconn and `sessions`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from oidcproxy.errors import StoreUnavailable
from oidcproxy.model import Clock, Session, scoped
from oidcproxy.redisconn import REDIS_FAULTS, RedisClient, raise_if_cancelled
from oidcproxy.sessions.codec import SessionCodec
from oidcproxy.sessions.cookies import CookiePolicy, SetCookie, chunk_names, join_cookie
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.store import MISS, CookieJar, Miss

__all__ = ["TICKET_PREFIX", "RedisSessionStore", "is_ticket"]

log = logging.getLogger("oidcproxy.session")

TICKET_PREFIX = "t."
_ID, _KEY = 16, 32
_REPLACED_S = 60  # a replaced ticket's entry lives on this long (requests in flight, refresh reuse_s)
T = TypeVar("T")


def is_ticket(value: str | None) -> bool:
    return value is not None and value.startswith(TICKET_PREFIX)


class RedisSessionStore:
    """Sessions in Redis behind ticket cookies; `failures` counts the Redis faults it met."""

    def __init__(
        self,
        client: RedisClient,
        keys: KeyRing,
        policy: CookiePolicy,
        clock: Clock,
        *,
        prefix: str = "oidcproxy:",
        cache_ttl_s: float = 5.0,
        timeout_s: float = 1.0,
        max_entries: int = 4096,
    ) -> None:
        self._client = client
        self._keys = keys
        self._policy = policy
        self._clock = clock
        self._prefix = prefix
        self._aad = b"oidcproxy-ticket:" + policy.name.encode()
        self._cache_ttl_s = cache_ttl_s
        self._timeout_s = timeout_s
        self._max_entries = max_entries
        self._cache: OrderedDict[str, tuple[Session, float]] = OrderedDict()
        self.failures = 0

    # -- finding a request's session ------------------------------------------------------------

    def cached(self, header: str | None) -> Session | None:
        """The session this Cookie header opened less than --session-cache-ttl ago, still valid."""
        if not header:
            return None
        hit = self._cache.get(header)
        if hit is None:
            return None
        session, fetched_at = hit
        now = self._clock()
        if now - fetched_at >= self._cache_ttl_s or session.expired(now):
            del self._cache[header]
            return None
        return session

    def peek(self, header: str | None, cookies: CookieJar) -> Session | Miss | None:
        if not header:
            return None
        session = self.cached(header)
        return MISS if session is None else session

    async def fetch(self, header: str | None, cookies: CookieJar) -> Session | None:
        ticket = self._ticket(join_cookie(self._policy.name, cookies()))
        if ticket is None:
            return None
        ident, key = ticket
        sealed = await self._call(self._client.get(self._entry(ident)), "read a session")
        if sealed is None:
            return None  # ended (sign-out, revocation) or expired
        text = sealed.decode("ascii", "replace") if isinstance(sealed, bytes) else str(sealed)
        session = _codec(key, self._policy.name).decode(text)
        if session is None or session.expired(self._clock()):
            return None
        if header and self._cache_ttl_s > 0:
            self._remember(header, session)
        return session

    def holds_ticket(self, cookies: Mapping[str, str]) -> bool:
        return is_ticket(join_cookie(self._policy.name, cookies))

    # -- writing ----------------------------------------------------------------------------------

    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[SetCookie]:
        ident, key = os.urandom(_ID), os.urandom(_KEY)
        ttl_ms = max(1000, int((session.expires_at - self._clock()) * 1000))
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self._entry(ident), _codec(key, self._policy.name).encode(session), px=ttl_ms)
        for index in self._indexes(session):
            pipe.sadd(index, ident.hex())
            pipe.pexpire(index, ttl_ms, nx=True)
            pipe.pexpire(index, ttl_ms, gt=True)
        old = self._ticket(join_cookie(self._policy.name, cookies))
        if old is not None:
            pipe.expire(self._entry(old[0]), _REPLACED_S, lt=True)
        await self._call(pipe.execute(), "store a session")
        value = TICKET_PREFIX + self._keys.seal(ident + key, self._aad)
        stale = [n for n in chunk_names(self._policy.name, cookies) if n != self._policy.name]
        max_age = max(1, ttl_ms // 1000)
        return [
            SetCookie.make(self._policy, self._policy.name, value, max_age),
            *(SetCookie.make(self._policy, n, "", 0) for n in stale),
        ]

    async def clear(self, cookies: Mapping[str, str]) -> list[SetCookie]:
        ticket = self._ticket(join_cookie(self._policy.name, cookies))
        if ticket is not None:
            await self._call(self._client.delete(self._entry(ticket[0])), "end a session")
            self._cache.clear()  # rare (sign-out); no stale copy of it may pass here
        names = chunk_names(self._policy.name, cookies) or [self._policy.name]
        return [SetCookie.make(self._policy, n, "", 0) for n in names]

    async def retire(self, cookies: Mapping[str, str]) -> None:
        """The request's ticket was replaced by a cookie session: its entry expires shortly."""
        ticket = self._ticket(join_cookie(self._policy.name, cookies))
        if ticket is not None:
            await self._call(self._client.expire(self._entry(ticket[0]), _REPLACED_S, lt=True), "retire")

    async def end_sessions(self, *, subject: str = "", sid: str = "") -> int:
        """Delete every entry indexed under the subject or the sid (under any cookie secret)."""
        indexes = [*self._tagged("sub", subject), *self._tagged("sid", sid)]
        if not indexes:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for index in indexes:
            pipe.smembers(index)
        members: list[Any] = await self._call(pipe.execute(), "read a session index")
        ids = {m.decode() if isinstance(m, bytes) else str(m) for found in members for m in found}
        pipe = self._client.pipeline(transaction=False)
        for ident in sorted(ids):
            pipe.delete(self._entry(bytes.fromhex(ident)))
        for index in indexes:
            pipe.delete(index)
        answers: list[Any] = await self._call(pipe.execute(), "end sessions")
        self._cache.clear()
        return sum(int(n) for n in answers[: len(ids)])

    async def close(self) -> None:
        self._cache.clear()  # the client belongs to the app (web.app closes it)

    # -- helpers ----------------------------------------------------------------------------------

    def entry_key(self, cookies: Mapping[str, str]) -> str | None:
        """The Redis key of the request's session (tests and operators revoke by deleting it)."""
        ticket = self._ticket(join_cookie(self._policy.name, cookies))
        return None if ticket is None else self._entry(ticket[0])

    def _ticket(self, value: str | None) -> tuple[bytes, bytes] | None:
        if value is None or not is_ticket(value):
            return None
        raw = self._keys.open(value[len(TICKET_PREFIX) :], self._aad)
        if raw is None or len(raw) != _ID + _KEY:
            log.debug("ticket cookie ignored: tampered, truncated or sealed with another secret")
            return None
        return raw[:_ID], raw[_ID:]

    def _entry(self, ident: bytes) -> str:
        return f"{self._prefix}s:{ident.hex()}"

    def _tagged(self, kind: str, value: str) -> list[str]:
        if not value:
            return []
        return [f"{self._prefix}{kind}:{tag}" for tag in self._keys.tags(f"{kind}:{value}".encode())]

    def _indexes(self, session: Session) -> list[str]:
        """Under the sealing secret only; `end_sessions` looks under every secret. Keyed as
        `model.scoped` keys them: one provider's sign-out never reaches another provider's sessions."""
        out = self._tagged("sub", scoped(session.provider, session.identity.subject))[:1]
        return out + self._tagged("sid", scoped(session.provider, session.sid))[:1]

    def _remember(self, header: str, session: Session) -> None:
        self._cache[header] = (session, self._clock())
        self._cache.move_to_end(header)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    async def _call(self, call: Awaitable[T], what: str) -> T:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except REDIS_FAULTS as exc:
            raise_if_cancelled(exc)
            self.failures += 1
            detail = f"session store: could not {what}: {type(exc).__name__}: {exc}"
            log.warning("%s", detail)
            raise StoreUnavailable(detail) from exc


def _codec(key: bytes, cookie_name: str) -> SessionCodec:
    """The codec of one entry: the session key is the only secret of its ring."""
    return SessionCodec(KeyRing([key]), cookie_name)
