"""Sessions and cookie stores as the unit tests build them: a fixed time, sessions of any size, a
key ring that counts its opens."""

from __future__ import annotations

from oidcproxy.model import FakeClock, Identity, Session, Tokens
from oidcproxy.sessions.cookies import CookiePolicy, SetCookie
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.store import CookieSessionStore, SessionCache

__all__ = ["NOW", "CountingKeyRing", "jar", "session", "store_with"]

NOW = 1_800_000_000.0


def session(subject: str = "sub-1", *, lifetime: float = 3600, groups: int = 2) -> Session:
    names = tuple(f"group-{i:04}-{i * 7919 % 10007}" for i in range(groups))
    identity = Identity(subject, f"{subject}@example.com", True, subject, subject, names)
    return Session(identity, Tokens("id.token", "access", "", NOW + 300), NOW, NOW + lifetime)


def jar(cookies: list[SetCookie]) -> dict[str, str]:
    return {c.name: c.value for c in cookies if c.max_age > 0}


class CountingKeyRing(KeyRing):
    """Counts AEAD opens, to show that a cache hit does none (a real KeyRing, only observed)."""

    __slots__ = ("opens",)

    def __init__(self, secrets: list[bytes]) -> None:
        super().__init__(secrets)
        self.opens = 0

    def open(self, sealed: str, associated: bytes) -> bytes | None:
        self.opens += 1
        return super().open(sealed, associated)


def store_with(
    clock: FakeClock, cache: SessionCache | None = None
) -> tuple[CookieSessionStore, CountingKeyRing]:
    keys = CountingKeyRing([b"k" * 32])
    return CookieSessionStore(keys, CookiePolicy(), clock, cache), keys
