"""Sessions: a versioned compact codec, the SessionStore protocol and the cookie-backed store.

The session is JSON (positional, short), deflated when that helps, then sealed with the key ring and
the cookie name as associated data, so a cookie cannot be replayed under another name. Imports only
model, crypto and cookies.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Mapping
from typing import Protocol

from oidcproxy.cookies import CookiePolicy, SetCookie, chunk_names, join_cookie, split_cookie
from oidcproxy.crypto import KeyRing
from oidcproxy.model import Clock, Identity, Session, Tokens

__all__ = ["CookieSessionStore", "SessionCodec", "SessionStore"]

log = logging.getLogger("oidcproxy.session")

_V0_PLAIN = b"j"
_V0_DEFLATED = b"z"


class SessionCodec:
    """Session <-> sealed text. `decode` answers None for anything it cannot trust."""

    __slots__ = ("_aad", "_keys")

    def __init__(self, keys: KeyRing, cookie_name: str) -> None:
        self._keys = keys
        self._aad = b"oidcproxy-session:" + cookie_name.encode()

    def encode(self, session: Session) -> str:
        ident, tok = session.identity, session.tokens
        fields = [
            ident.subject, ident.email, ident.email_verified, ident.user, ident.preferred_username,
            list(ident.groups), tok.id_token, tok.access_token, tok.refresh_token, tok.expires_at,
            session.created_at, session.expires_at,
        ]  # fmt: skip
        raw = json.dumps(fields, separators=(",", ":")).encode()
        packed = zlib.compress(raw, 6)
        body = _V0_DEFLATED + packed if len(packed) < len(raw) else _V0_PLAIN + raw
        return self._keys.seal(body, self._aad)

    def decode(self, sealed: str) -> Session | None:
        body = self._keys.open(sealed, self._aad)
        if body is None:
            return None
        try:
            raw = zlib.decompress(body[1:]) if body[:1] == _V0_DEFLATED else body[1:]
            (sub, email, verified, user, pref, groups, idt, at, rt, texp, created, exp) = json.loads(raw)
            identity = Identity(sub, email, bool(verified), user, pref, tuple(groups))
            return Session(identity, Tokens(idt, at, rt, float(texp)), float(created), float(exp))
        except (ValueError, TypeError, zlib.error):
            return None


class SessionStore(Protocol):
    async def load(self, cookies: Mapping[str, str]) -> Session | None: ...
    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[SetCookie]: ...
    async def clear(self, cookies: Mapping[str, str]) -> list[SetCookie]: ...


class CookieSessionStore:
    """The whole session lives in the browser, sealed and split over as many cookies as it needs."""

    __slots__ = ("_clock", "_codec", "_policy")

    def __init__(self, keys: KeyRing, policy: CookiePolicy, clock: Clock) -> None:
        self._codec = SessionCodec(keys, policy.name)
        self._policy = policy
        self._clock = clock

    def open(self, cookies: Mapping[str, str]) -> Session | None:
        """Synchronous load for the hot path: no I/O happens here."""
        sealed = join_cookie(self._policy.name, cookies)
        if sealed is None:
            return None
        session = self._codec.decode(sealed)
        if session is None:
            log.debug("session cookie ignored: tampered, truncated or sealed with another secret")
            return None
        if session.expired(self._clock()):
            log.debug("session cookie ignored: expired")
            return None
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
