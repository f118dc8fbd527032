"""One contract, every store (STYLE C11): the cookie store, the Redis ticket store and the autopilot
(small sessions in the cookie, large ones in Redis) behave the same through `SessionStore`, against a
real redis-server. What differs is stated by `kind` (only server-side sessions can be revoked)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

import pytest
import redis.asyncio as aioredis

from oidcproxy.model import FakeClock, Session
from oidcproxy.redisconn import RedisConfig, connect
from oidcproxy.sessions.cookies import CHUNK_SIZE, CookiePolicy, SetCookie
from oidcproxy.sessions.hybrid import HybridSessionStore
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.redis import RedisSessionStore
from oidcproxy.sessions.store import MISS, CookieSessionStore, SessionStore
from tests.support.redis import RedisServer
from tests.unit.test_session_cache import NOW, jar, session

OLD, NEW = b"o" * 32, b"n" * 32
KINDS = ["cookie", "redis", "autopilot"]


@dataclass
class Stores:
    """Makes stores of one kind over one Redis, with any key ring (a restart with other secrets)."""

    kind: str
    make: Callable[[list[bytes]], SessionStore]
    clock: FakeClock
    client: aioredis.Redis | None


@pytest.fixture(params=KINDS)
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    clock = FakeClock(NOW)
    policy = CookiePolicy(secure=False)
    if request.param == "cookie":
        yield Stores("cookie", lambda ring: CookieSessionStore(KeyRing(ring), policy, clock), clock, None)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = connect(RedisConfig(url=server.url))

    def make(ring: list[bytes]) -> SessionStore:
        keys = KeyRing(ring)
        tickets = RedisSessionStore(client, keys, policy, clock, cache_ttl_s=5)
        return HybridSessionStore(
            CookieSessionStore(keys, policy, clock), tickets, 0 if request.param == "redis" else 2
        )

    yield Stores(request.param, make, clock, client)  # type: ignore[arg-type]
    await client.aclose()


def header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


async def load(store: SessionStore, cookies: dict[str, str]) -> Session | None:
    found = store.peek(header(cookies) if cookies else None, lambda: cookies)
    if found is MISS:
        return await store.fetch(header(cookies), lambda: cookies)
    return found


def cleared(out: list[SetCookie]) -> set[str]:
    return {c.name for c in out if c.max_age == 0}


async def test_save_then_load(stores: Stores) -> None:
    store = stores.make([OLD])
    alice = replace(session("alice"), sid="sid-1")
    cookies = jar(await store.save(alice, {}))
    assert await load(store, cookies) == alice
    assert await load(stores.make([OLD]), cookies) == alice  # another replica, or after a restart


async def test_no_cookie_a_foreign_cookie_or_a_tampered_one_is_no_session(stores: Stores) -> None:
    store = stores.make([OLD])
    cookies = jar(await store.save(session("alice"), {}))
    assert await load(store, {}) is None
    assert await load(store, {"theme": "dark"}) is None
    tampered = {k: v[:-4] + ("AAAA" if not v.endswith("AAAA") else "BBBB") for k, v in cookies.items()}
    assert await load(stores.make([OLD]), tampered) is None
    assert await load(stores.make([NEW]), cookies) is None  # sealed with a secret nobody gave


async def test_an_expired_session_is_no_session(stores: Stores) -> None:
    store = stores.make([OLD])
    cookies = jar(await store.save(session("alice", lifetime=60), {}))
    stores.clock.advance(61)
    assert await load(stores.make([OLD]), cookies) is None


async def test_a_4000_group_session_round_trips_and_stays_one_small_cookie_with_redis(
    stores: Stores,
) -> None:
    store = stores.make([OLD])
    big = session("alice", groups=4000)
    out = await store.save(big, {})
    cookies = jar(out)
    assert await load(stores.make([OLD]), cookies) == big
    if stores.kind == "cookie":
        assert len(cookies) > 2
    else:
        assert len(cookies) == 1 and len(next(iter(cookies.values()))) < 200


async def test_small_sessions_stay_in_the_cookie_unless_redis_is_the_store(stores: Stores) -> None:
    cookies = jar(await stores.make([OLD]).save(session("alice"), {}))
    value = next(iter(cookies.values()))
    assert value.startswith("t.") == (stores.kind == "redis")
    if stores.client is not None:
        assert bool(await stores.client.dbsize()) == (stores.kind == "redis")


async def test_saving_over_a_chunked_cookie_deletes_the_chunks_it_no_longer_needs(stores: Stores) -> None:
    store = stores.make([OLD])
    chunked = jar(await store.save(session("alice", groups=4000), {}))
    if stores.kind != "cookie":  # the big session went to Redis: make the chunked jar by hand
        plain = CookieSessionStore(KeyRing([OLD]), CookiePolicy(), stores.clock)
        chunked = jar(await plain.save(session("alice", groups=4000), {}))
    out = await store.save(session("alice"), chunked)
    kept = jar(out)
    assert set(chunked) - set(kept) <= cleared(out)
    assert await load(store, kept) == session("alice")


async def test_clear_deletes_the_cookies_and_with_redis_the_session_itself(stores: Stores) -> None:
    store = stores.make([OLD])
    big = session("alice", groups=4000)
    cookies = jar(await store.save(big, {}))
    out = await store.clear(cookies)
    assert set(cookies) <= cleared(out)
    copied = stores.make([OLD])  # a copy of the cookie, kept by someone after sign-out
    assert (await load(copied, cookies) is None) == (stores.kind != "cookie")


async def test_end_sessions_by_subject_or_provider_sid(stores: Stores) -> None:
    store = stores.make([OLD])
    big = replace(session("alice", groups=4000), sid="sid-a")
    first = jar(await store.save(big, {}))
    second = jar(await store.save(replace(big, sid="sid-b"), {}))
    bob = jar(await store.save(replace(session("bob", groups=4000), sid="sid-c"), {}))
    if stores.kind == "cookie":
        assert await store.end_sessions(subject="alice") == 0  # nothing kept server-side to end
        return
    assert await store.end_sessions(sid="sid-b") == 1
    fresh = stores.make([OLD])
    assert await load(fresh, first) is not None and await load(fresh, second) is None
    assert await store.end_sessions(subject="alice") == 1
    fresh = stores.make([OLD])
    assert await load(fresh, first) is None and await load(fresh, bob) is not None


async def test_a_prepended_secret_opens_old_sessions_and_reseals_them_on_save(stores: Stores) -> None:
    before = stores.make([OLD])
    alice = session("alice", groups=4000)
    old_cookies = jar(await before.save(alice, {}))
    rotated = stores.make([NEW, OLD])  # restarted with a new secret first
    assert await load(rotated, old_cookies) == alice
    new_cookies = jar(await rotated.save(alice, old_cookies))
    assert await load(stores.make([NEW]), new_cookies) == alice  # the old secret can now go
    assert await load(stores.make([NEW]), old_cookies) is None


async def test_the_session_keeps_the_provider_sid(stores: Stores) -> None:
    store = stores.make([OLD])
    cookies = jar(await store.save(replace(session("alice"), sid="provider-session-7"), {}))
    found = await load(stores.make([OLD]), cookies)
    assert found is not None and found.sid == "provider-session-7"


def test_chunk_size_assumption() -> None:
    assert CHUNK_SIZE * 2 < 4000 * 20  # a 4,000-group session needs more than two chunks
