"""The revocation list: what it refuses, how workers sharing a state see each other's entries, and
the session codec keeping `sid` (with cookies sealed before it still opening)."""

from __future__ import annotations

import json

from oidcproxy.coordination import LocalState, Revocations
from oidcproxy.model import FakeClock, Identity, Session, Tokens
from oidcproxy.sessions import KeyRing, SessionCodec

DAY = 86400.0


def _session(sub: str = "alice", sid: str = "sid-1", signed_in: float = 1_800_000_000.0) -> Session:
    return Session(
        Identity(sub), Tokens("id", "at", "rt", signed_in + 300), signed_in, signed_in + DAY, sid, signed_in
    )


async def test_revoked_sid_refuses_sessions_signed_in_before_and_not_after() -> None:
    clock = FakeClock()
    revocations = Revocations(LocalState(clock), clock, lifetime_s=DAY)
    before = _session(signed_in=clock())
    other = _session(sid="sid-2", signed_in=clock())
    clock.advance(5)
    await revocations.revoke(sid="sid-1")
    assert revocations.revoked(before)
    assert not revocations.revoked(other)
    clock.advance(5)
    assert not revocations.revoked(_session(sid="sid-1", signed_in=clock()))


async def test_revoked_sub_refuses_every_session_of_that_person_signed_in_before() -> None:
    clock = FakeClock()
    revocations = Revocations(LocalState(clock), clock, lifetime_s=DAY)
    a, b = _session(sid="a", signed_in=clock()), _session(sid="b", signed_in=clock())
    clock.advance(1)
    await revocations.revoke(sub="alice")
    assert revocations.revoked(a) and revocations.revoked(b)
    assert not revocations.revoked(_session(sub="bob", signed_in=clock() - 10))
    clock.advance(1)
    assert not revocations.revoked(_session(signed_in=clock()))  # signed in again afterwards


async def test_another_worker_sees_entries_after_a_sync_and_they_expire_with_the_longest_session() -> None:
    clock = FakeClock()
    shared = LocalState(clock)
    writer, reader = Revocations(shared, clock, DAY), Revocations(shared, clock, DAY)
    old = _session(signed_in=clock())
    clock.advance(1)
    await writer.revoke(sid="sid-1")
    await writer.revoke(sub="bob")
    assert not reader.revoked(old)  # not synced yet: the hot path never reads the shared state
    await reader.sync()
    assert reader.revoked(old)
    assert len(reader) == 2
    clock.advance(DAY + 2)
    await reader.sync()
    assert len(reader) == 0


async def test_a_new_reader_finds_the_live_run_after_older_slots_expired() -> None:
    clock = FakeClock()
    shared = LocalState(clock)
    writer = Revocations(shared, clock, lifetime_s=100)
    for n in range(20):
        await writer.revoke(sid=f"old-{n}")
    clock.advance(60)
    for n in range(3):
        await writer.revoke(sid=f"new-{n}")
    clock.advance(50)  # the first twenty slots expired, the last three live
    late = Revocations(shared, clock, lifetime_s=100)
    await late.sync()
    assert len(late) == 3
    assert late.revoked(_session(sid="new-2", signed_in=clock() - 60))


async def test_two_writers_never_take_the_same_slot() -> None:
    clock = FakeClock()
    shared = LocalState(clock)
    one, two = Revocations(shared, clock, DAY), Revocations(shared, clock, DAY)
    await one.revoke(sid="x")
    await two.revoke(sid="y")
    await one.revoke(sid="z")
    reader = Revocations(shared, clock, DAY)
    await reader.sync()
    assert len(reader) == 3


def test_codec_keeps_sid_and_sign_in_time_and_still_opens_v0_cookies() -> None:
    keys = KeyRing([b"k" * 32])
    codec = SessionCodec(keys, "_oidcproxy")
    session = _session()
    assert codec.decode(codec.encode(session)) == session
    v0 = ["alice", "a@x.org", True, "a", "a", [], "id", "at", "rt", 1.0, 1_700_000_000.0, 1_900_000_000.0]
    sealed = keys.seal(b"j" + json.dumps(v0).encode(), b"oidcproxy-session:_oidcproxy")
    opened = codec.decode(sealed)
    assert opened is not None
    assert (opened.identity.subject, opened.sid, opened.login_time) == ("alice", "", 1_700_000_000.0)
