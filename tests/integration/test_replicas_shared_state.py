"""Two replicas of the proxy sharing refresh and login state through one real Redis.

Two apps (each with its own redis-py client and RedisState, as two pods have) are served in this
process against a provider that rotates refresh tokens and refuses a reused one (the npm
oidc-provider also revokes the whole grant then; and our embedded one). IdPTap counts the grants the
token endpoint sees. Requests alternate between the replicas, so one replica refreshes while the
other holds requests with the same old cookie. Real time: the 4-second tokens are due for refresh
3.2 s after sign-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio
from aiohttp.test_utils import TestServer
from redis.backoff import NoBackoff
from redis.retry import Retry
from yarl import URL

from oidcproxy.coordination import RedisState
from oidcproxy.web.app import build_app
from tests.factories import make_settings
from tests.integration.test_workers_shared_state import (
    TTL_S,
    Provider,
    browser,  # noqa: F401  (fixtures used by name)
    rotating,  # noqa: F401
    sign_in,
    tap,  # noqa: F401
)
from tests.support.oidcflow import IdPTap
from tests.support.redis import RedisServer
from tests.support.workers import (
    PARALLEL,
    Reply,
    deletes_session,
    fresh_connection_get,
    refreshed,
    session_cookies,
)


@pytest.fixture
async def replicas(
    rotating: Provider,  # noqa: F811
    tap: IdPTap,  # noqa: F811
    upstream: TestServer,
    redis_server: RedisServer,
    aiohttp_server: Any,
) -> AsyncIterator[tuple[URL, URL]]:
    """Two proxies, one Redis; each its own client, configured as the store's: 1 s, no retries."""
    authorize, jwks = rotating.paths
    settings = make_settings(
        upstream=[str(upstream.make_url("/"))],
        oidc_issuer_url=rotating.issuer,
        client_id=rotating.client_id,
        client_secret=rotating.client_secret,
        skip_oidc_discovery=True,
        login_url=rotating.issuer + authorize,
        redeem_url=tap.url("/token"),
        oidc_jwks_url=rotating.issuer + jwks,
        request_logging=False,
    )
    bases = []
    for _ in range(2):
        client = redis.asyncio.Redis(
            **redis_server.client_kwargs(), socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
        app = build_app(settings, shared_state=RedisState(client))
        app.on_cleanup.append(lambda _app, c=client: c.aclose())
        server: TestServer = await aiohttp_server(app)
        bases.append(server.make_url("/"))
    yield bases[0], bases[1]


async def spread(replicas: tuple[URL, URL], cookies: dict[str, str], tag: str) -> list[Reply]:
    """PARALLEL requests with the same cookie, every other one to the other replica."""
    urls = [replicas[i % 2].with_path(f"/{tag}{i}") for i in range(PARALLEL)]
    return await asyncio.gather(*(fresh_connection_get(url, cookies) for url in urls))


async def test_parallel_requests_with_the_old_cookie_on_two_replicas_share_one_refresh(
    replicas: tuple[URL, URL],
    rotating: Provider,  # noqa: F811
    tap: IdPTap,  # noqa: F811
    browser: aiohttp.ClientSession,  # noqa: F811
) -> None:
    signed_in = await sign_in(browser, replicas[0], rotating)
    old = session_cookies(browser.cookie_jar)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, signed_in + TTL_S * 0.8 + 0.3 - loop.time()))  # real time: refresh due
    during = await spread(replicas, old, "during")  # one replica refreshes, the other waits for it
    after = await spread(replicas, old, "after")  # the old cookie, right after the refresh
    for reply in during + after:
        assert reply.status == 200
        assert not deletes_session(reply)
        assert refreshed(reply)  # each gets the refreshed session's cookie, from either replica
    assert tap.grants["refresh_token"] == 1
    # The new cookie refreshes once more when due (a replayed token would have made oidc-provider
    # revoke the grant, and this refresh would fail).
    new = {n: m.value for n, m in after[0].set_cookies[0].items()}
    await asyncio.sleep(TTL_S * 0.8 + 0.3)
    again = await spread(replicas, new, "again")
    assert [r.status for r in again] == [200] * PARALLEL
    assert not any(deletes_session(r) for r in again)
    assert tap.grants["refresh_token"] == 2


async def test_a_login_callback_is_accepted_once_across_replicas(
    replicas: tuple[URL, URL],
    rotating: Provider,  # noqa: F811
    tap: IdPTap,  # noqa: F811
    browser: aiohttp.ClientSession,  # noqa: F811
) -> None:
    start = await browser.get(replicas[0].with_path("/oauth2/start"), allow_redirects=False)
    assert start.status == 302
    login_cookie = {c.key: c.value for c in browser.cookie_jar if "_csrf_" in c.key}
    callback = URL(await rotating.login(browser, start.headers["Location"]))
    on = [base.with_path(callback.path).with_query(callback.query) for base in replicas]
    first = await fresh_connection_get(on[1], login_cookie)  # the callback lands on the other replica
    assert first.status == 302
    assert refreshed(first)  # signed in
    replays = await asyncio.gather(*(fresh_connection_get(on[i % 2], login_cookie) for i in range(8)))
    assert [r.status for r in replays] == [400] * 8
    assert tap.grants["authorization_code"] == 1  # no replay reached the provider
