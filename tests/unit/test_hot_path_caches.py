"""Per-request work the hot path skips on a steady session: parsing the Cookie header, joining its chunks,
and building the identity headers (40 KB of groups for a 4,000-group session)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping

from multidict import CIMultiDict

from oidcproxy.model import FakeClock, Session
from oidcproxy.proxy import HeaderCaches, HeaderPolicy, upstream_headers
from tests.support.sessions import NOW, jar, session, store_with


def cookie_header(cookies: Mapping[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in [("theme", "dark"), *cookies.items()])


def test_the_same_cookie_header_opens_without_parsing_or_crypto() -> None:
    clock = FakeClock(NOW)
    store, ring = store_with(clock)
    cookies = jar(asyncio.run(store.save(session(groups=4000), {})))
    assert len(cookies) > 5  # a large session, chunked
    header = cookie_header(cookies)
    parsed: list[int] = []

    def parse() -> Mapping[str, str]:
        parsed.append(1)
        return cookies

    first = store.open_header(header, parse)
    assert first is not None and len(first.identity.groups) == 4000
    opens = ring.opens
    for _ in range(3):
        assert store.open_header(header, parse) is first
    assert parsed == [1] and ring.opens == opens


def test_header_cache_still_honours_expiry_and_misses_on_another_header() -> None:
    clock = FakeClock(NOW)
    store, _ = store_with(clock)
    cookies = jar(asyncio.run(store.save(session(lifetime=60), {})))
    header = cookie_header(cookies)
    assert store.open_header(header, lambda: cookies) is not None
    assert store.open_header(None, lambda: cookies) is None
    assert store.open_header("theme=dark", lambda: {"theme": "dark"}) is None
    clock.advance(61)
    assert store.open_header(header, lambda: cookies) is None


CACHES = HeaderCaches()  # the app's UpstreamProxy owns one


def sent(policy: HeaderPolicy, s: Session) -> CIMultiDict[str]:
    return upstream_headers(
        {"Cookie": "theme=dark"},
        policy=policy,
        identity=s.identity,
        tokens=s.tokens,
        peer="10.0.0.1",
        scheme="https",
        host="app.example",
        caches=CACHES,
    )


def test_identity_headers_are_built_once_per_session() -> None:
    s = session(groups=4000)
    policy = HeaderPolicy(pass_access_token=True)
    groups = sent(policy, s)["X-Forwarded-Groups"]
    assert groups == ",".join(s.identity.groups)
    assert sent(policy, s)["X-Forwarded-Groups"] is groups  # the very same string: nothing rebuilt
    refreshed = dataclasses.replace(s, tokens=dataclasses.replace(s.tokens, access_token="new-access"))
    assert sent(policy, refreshed)["X-Forwarded-Access-Token"] == "new-access"
    assert "X-Forwarded-Groups" not in sent(HeaderPolicy(pass_user_headers=False), s)
