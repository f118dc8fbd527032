"""Sessions: what a signed-in browser holds, and the store that opens, saves and clears it.

    keys     the key ring: AEAD seal/open, key ids for secret rotation
    cookies  pure: split/join cookie values, Set-Cookie specs, attribute policy
    codec    Session <-> sealed text (versioned, compact, bound to the cookie name)
    store    the SessionStore protocol (peek/fetch/save/clear/end_sessions) and the cookie store
    redis    the Redis store: ticket cookies, sessions sealed in Redis under a per-session key
    hybrid   cookie and ticket sessions under one name: the autopilot and --session-store-type=redis

Imports model, errors and redisconn.
"""

from __future__ import annotations

from oidcproxy.sessions.codec import SessionCodec
from oidcproxy.sessions.cookies import CookiePolicy, SetCookie
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.store import MISS, CookieSessionStore, Miss, SessionCache, SessionStore

__all__ = [
    "MISS",
    "Miss",
    "CookiePolicy",
    "CookieSessionStore",
    "KeyRing",
    "SessionCache",
    "SessionCodec",
    "SessionStore",
    "SetCookie",
]
