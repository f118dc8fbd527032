"""The sealed session cookie: round trip, tampering, foreign keys and names, expiry, chunking."""

from __future__ import annotations

import asyncio

from oidcproxy.model import FakeClock, Identity, Session, Tokens
from oidcproxy.sessions import CookieSessionStore, SessionCodec
from oidcproxy.sessions.cookies import CookiePolicy, join_cookie, split_cookie
from oidcproxy.sessions.keys import KeyRing

ALICE = Identity("sub-1", "alice@example.com", True, "alice@example.com", "alice", ("admins", "dev"))
TOKENS = Tokens("id.token.here", "access", "refresh", 1_800_000_300.0)


def session(now: float = 1_800_000_000.0, groups: int = 0) -> Session:
    ident = (
        ALICE
        if not groups
        else Identity("s", "a@x.org", True, "a", "a", tuple(f"g{i:04}" for i in range(groups)))
    )
    return Session(ident, TOKENS, now, now + 3600)


def jar(cookies: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {c.name: c.value for c in cookies if c.max_age > 0}


def test_codec_round_trip_and_secrets_hidden() -> None:
    codec = SessionCodec(KeyRing([b"k" * 32]), "_oidcproxy")
    sealed = codec.encode(session())
    assert codec.decode(sealed) == session()
    assert "id.token.here" not in repr(session())
    assert "alice" not in sealed


def test_tampered_truncated_and_garbage_are_no_session() -> None:
    codec = SessionCodec(KeyRing([b"k" * 32]), "_oidcproxy")
    sealed = codec.encode(session())
    flipped = sealed[:10] + ("A" if sealed[10] != "A" else "B") + sealed[11:]
    for bad in (flipped, sealed[:-3], sealed[:20], "", "!!!", "AAAA" * 40):
        assert codec.decode(bad) is None


def test_foreign_secret_or_cookie_name_is_no_session() -> None:
    sealed = SessionCodec(KeyRing([b"k" * 32]), "_oidcproxy").encode(session())
    assert SessionCodec(KeyRing([b"j" * 32]), "_oidcproxy").decode(sealed) is None
    assert SessionCodec(KeyRing([b"k" * 32]), "_other").decode(sealed) is None


def test_rotation_new_secret_first_still_opens_old() -> None:
    old = SessionCodec(KeyRing([b"k" * 32]), "n").encode(session())
    assert SessionCodec(KeyRing([b"new" * 8, b"k" * 32]), "n").decode(old) == session()


def test_store_expiry_follows_injected_clock() -> None:
    clock = FakeClock(1_800_000_000.0)
    store = CookieSessionStore(KeyRing([b"k" * 32]), CookiePolicy(), clock)
    cookies = jar(asyncio.run(store.save(session(), {})))
    assert store.open(cookies) == session()
    clock.advance(3601)
    assert store.open(cookies) is None


def test_large_session_split_joined_and_stale_chunks_cleared() -> None:
    clock = FakeClock(1_800_000_000.0)
    store = CookieSessionStore(KeyRing([b"k" * 32]), CookiePolicy(), clock)
    big = session(groups=3000)
    written = asyncio.run(store.save(big, {}))
    names = [c.name for c in written]
    assert names[0] == "_oidcproxy_0" and len(names) >= 2
    assert all(len(c.value) <= 3800 for c in written)
    cookies = jar(written)
    assert store.open(cookies) == big
    missing = {k: v for k, v in cookies.items() if k != "_oidcproxy_1"}
    assert store.open(missing) is None
    small = asyncio.run(store.save(session(), cookies))
    cleared = {c.name for c in small if c.max_age == 0}
    assert cleared == set(cookies)
    assert [c.name for c in small if c.max_age > 0] == ["_oidcproxy"]


def test_split_join() -> None:
    parts = split_cookie("n", "abcdefgh", limit=3)
    assert parts == [("n_0", "abc"), ("n_1", "def"), ("n_2", "gh")]
    assert join_cookie("n", dict(parts)) == "abcdefgh"
    assert join_cookie("n", {}) is None
