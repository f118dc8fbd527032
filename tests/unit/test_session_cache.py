"""The LRU of opened sessions: hits skip the crypto but never the clock; it stays bounded."""

from __future__ import annotations

import asyncio

from oidcproxy.model import FakeClock
from oidcproxy.sessions.store import SessionCache
from tests.support.sessions import NOW, jar, session, store_with


def test_second_open_of_the_same_cookie_does_no_crypto() -> None:
    store, keys = store_with(FakeClock(NOW))
    cookies = jar(asyncio.run(store.save(session(), {})))
    first = store.open(cookies)
    second = store.open(cookies)
    assert first == second == session()
    assert keys.opens == 1


def test_cached_session_still_expires_by_the_clock() -> None:
    clock = FakeClock(NOW)
    store, _ = store_with(clock)
    cookies = jar(asyncio.run(store.save(session(lifetime=60), {})))
    assert store.open(cookies) is not None
    clock.advance(59)
    assert store.open(cookies) is not None
    clock.advance(1)
    assert store.open(cookies) is None
    clock.now = NOW  # a clock stepped back must not resurrect the dropped entry without a fresh open
    assert store.open(cookies) == session(lifetime=60)


def test_chunked_large_session_is_cached_under_its_joined_value() -> None:
    store, keys = store_with(FakeClock(NOW))
    big = session(groups=3000)
    cookies = jar(asyncio.run(store.save(big, {})))
    assert len(cookies) > 1
    assert store.open(cookies) == big
    assert store.open(dict(cookies)) == big
    assert keys.opens == 1


def test_tampered_cookie_is_neither_answered_nor_cached() -> None:
    cache = SessionCache()
    store, keys = store_with(FakeClock(NOW), cache)
    sealed = jar(asyncio.run(store.save(session(), {})))["_oidcproxy"]
    bad = {"_oidcproxy": sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")}
    assert store.open(bad) is None
    assert store.open(bad) is None
    assert keys.opens == 2
    assert len(cache) == 0


def test_cache_is_bounded_by_entries_and_evicts_the_least_recently_used() -> None:
    cache = SessionCache(max_entries=2)
    cache.put("a", session("a"))
    cache.put("b", session("b"))
    assert cache.get("a", NOW) is not None  # "a" is now the most recent
    cache.put("c", session("c"))
    assert len(cache) == 2
    assert cache.get("b", NOW) is None
    assert cache.get("a", NOW) is not None
    assert cache.get("c", NOW) is not None


def test_cache_is_bounded_by_the_size_of_the_sealed_values() -> None:
    cache = SessionCache(max_entries=100, max_chars=10)
    cache.put("x" * 6, session("x"))
    cache.put("y" * 6, session("y"))
    assert len(cache) == 1
    assert cache.get("y" * 6, NOW) is not None
    cache.put("z" * 11, session("z"))  # larger than the whole budget: not kept
    assert cache.get("z" * 11, NOW) is None


def test_a_zero_size_cache_caches_nothing() -> None:
    store, keys = store_with(FakeClock(NOW), SessionCache(max_entries=0))
    cookies = jar(asyncio.run(store.save(session(), {})))
    assert store.open(cookies) == store.open(cookies) == session()
    assert keys.opens == 2
