"""The store used whenever Redis is configured: cookie sessions and ticket sessions under one name.

`max_chunks` decides where a session goes when it is saved. With --session-store-type=cookie (the
autopilot) a session that fits in --cookie-max-chunks cookies stays in the cookie, and a larger one
moves to Redis behind a ticket cookie, so a 4,000-group session is one small cookie that NGINX
auth_request can pass in its one Set-Cookie. With --session-store-type=redis (`max_chunks` 0) every
save goes to Redis. Either way both kinds open, so switching modes signs nobody out.
Imports model and the rest of `sessions`.
"""

from __future__ import annotations

from collections.abc import Mapping

from oidcproxy.model import Session
from oidcproxy.sessions.cookies import CHUNK_SIZE, SetCookie
from oidcproxy.sessions.redis import RedisSessionStore
from oidcproxy.sessions.store import MISS, CookieJar, CookieSessionStore, Miss

__all__ = ["HybridSessionStore"]


class HybridSessionStore:
    """Small sessions in the cookie, large ones (or all, with max_chunks 0) in Redis."""

    def __init__(self, cookies: CookieSessionStore, tickets: RedisSessionStore, max_chunks: int) -> None:
        self._cookies = cookies
        self.tickets = tickets
        self._max_chunks = max_chunks

    @property
    def failures(self) -> int:
        return self.tickets.failures

    def peek(self, header: str | None, cookies: CookieJar) -> Session | Miss | None:
        session = self.tickets.cached(header) or self._cookies.open_header(header, cookies)
        if session is None and header and self.tickets.holds_ticket(cookies()):
            return MISS
        return session

    async def fetch(self, header: str | None, cookies: CookieJar) -> Session | None:
        return await self.tickets.fetch(header, cookies)

    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[SetCookie]:
        if self._max_chunks:
            sealed = self._cookies.codec.encode(session)
            if -(-len(sealed) // CHUNK_SIZE) <= self._max_chunks:
                out = self._cookies.save_sealed(session, sealed, cookies)
                await self.tickets.retire(cookies)  # a ticket it replaces: its entry expires soon
                return out
        return await self.tickets.save(session, cookies)

    async def clear(self, cookies: Mapping[str, str]) -> list[SetCookie]:
        if self.tickets.holds_ticket(cookies):
            return await self.tickets.clear(cookies)
        return await self._cookies.clear(cookies)

    async def end_sessions(self, *, subject: str = "", sid: str = "") -> int:
        return await self.tickets.end_sessions(subject=subject, sid=sid)

    async def close(self) -> None:
        await self.tickets.close()
