"""Sessions: what a signed-in browser holds, and the store that opens, saves and clears it.

    keys     the key ring: AEAD seal/open, key ids for secret rotation
    cookies  pure: split/join cookie values, Set-Cookie specs, attribute policy
    codec    Session <-> sealed text (versioned, compact, bound to the cookie name)
    store    the SessionStore protocol and the cookie store with its cache

A second store (Redis) is one new module here behind the same protocol. Imports only model.
"""

from __future__ import annotations

from oidcproxy.sessions.codec import SessionCodec
from oidcproxy.sessions.cookies import CookiePolicy, SetCookie
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.store import CookieSessionStore, SessionCache, SessionStore

__all__ = [
    "CookiePolicy",
    "CookieSessionStore",
    "KeyRing",
    "SessionCache",
    "SessionCodec",
    "SessionStore",
    "SetCookie",
]
