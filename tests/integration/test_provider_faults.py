"""The proxy against a provider that breaks on command: garbage, huge or absent key sets, a huge
discovery document, a provider that is down. The embedded provider (oidcproxy.idp) is served on its
own port and its test switches make the faults; the proxy's time is a FakeClock, moved by hand.

Bearer tokens are signed here with the provider's own current key (or a forged `kid`), which is
what the proxy sees from an API client holding a token the provider issued.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer

from oidcproxy.idp import DevIdP, IdPClient, IdPConfig, build_app
from oidcproxy.model import FakeClock, system_clock
from oidcproxy.oidc.jwks import KeySet
from oidcproxy.web.app import build_app as build_proxy
from oidcproxy.web.appkeys import OIDC
from tests.factories import make_settings, walk_login
from tests.support.devidp import dev_login

CLIENT = IdPClient(client_id="proxy", client_secret="proxy-secret", allow_loopback_redirects=True)
JSON = {"Accept": "application/json"}
DAY = 86400.0


@dataclass
class Rig:
    idp: DevIdP
    idp_server: TestServer
    proxy: TestServer
    clock: FakeClock

    @property
    def issuer(self) -> str:
        return self.idp.config.issuer

    @property
    def keys(self) -> KeySet:
        keys = self.proxy.app[OIDC].keys
        assert keys is not None
        return keys

    def token(self, kid: str | None = None) -> str:
        """A bearer token from the provider's current key; with `kid`, a forgery naming that kid."""
        now = int(self.clock())
        claims = {"iss": self.issuer, "aud": CLIENT.client_id, "sub": "alice", "iat": now}
        claims |= {"exp": now + 30 * DAY, "email": "alice@example.com", "email_verified": True}
        current = self.idp.keys.current
        pem = current.key.as_pem(private=True)
        return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid or current.kid})

    async def call(self, token: str) -> int:
        async with aiohttp.ClientSession() as cli:
            headers = {**JSON, "Authorization": f"Bearer {token}"}
            async with cli.get(self.proxy.make_url("/api"), headers=headers) as resp:
                await resp.read()
                return resp.status


@pytest.fixture
def rig(aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any) -> Callable[..., Any]:
    async def make(**overrides: Any) -> Rig:
        port = unused_tcp_port_factory()
        clock = FakeClock(system_clock())
        app, idp = build_app(IdPConfig(issuer=f"http://127.0.0.1:{port}", clients=(CLIENT,), clock=clock))
        idp_server: TestServer = await aiohttp_server(app, port=port)
        values: dict[str, Any] = {
            "upstream": [str(upstream.make_url("/"))],
            "oidc_issuer_url": idp.config.issuer,
            "client_id": CLIENT.client_id,
            "client_secret": CLIENT.client_secret,
            "skip_jwt_bearer_tokens": True,
            **overrides,
        }
        proxy: TestServer = await aiohttp_server(build_proxy(make_settings(**values), clock))
        return Rig(idp, idp_server, proxy, clock)

    return make


def answered(line: str, endpoint: str) -> int:
    """The size a log line says `endpoint` answered with, past the default limit."""
    found = re.search(
        re.escape(endpoint)
        + r" answered (\d+) bytes, more than --provider-max-response-size \(1048576 bytes\)",
        line,
    )
    assert found is not None, line
    return int(found.group(1))


async def burst(r: Rig, n: int) -> set[int]:
    """`n` concurrent requests, each with a bearer token naming a random, unknown kid."""
    return set(await asyncio.gather(*(r.call(r.token(kid=secrets.token_hex(8))) for _ in range(n))))


async def test_random_kids_while_the_key_set_is_garbage_cost_one_fetch_per_interval(
    rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    r: Rig = await rig()
    caplog.set_level(logging.INFO, logger="oidcproxy")
    good = r.token()
    assert await r.call(good) == 200
    assert r.idp.requests["/jwks"] == 1
    r.idp.jwks_garbage = True
    r.clock.advance(31)  # past --oidc-jwks-min-refetch (30s)
    assert await burst(r, 10) == {502}  # the key set cannot be had: provider trouble, not a 401
    assert r.idp.requests["/jwks"] == 2  # ten requests shared one attempt, not retried
    assert f"key set refresh failed: jwks: {r.issuer}/jwks did not return JSON" in caplog.text
    assert await burst(r, 10) == {502}
    assert r.idp.requests["/jwks"] == 2  # no new attempt within the interval
    assert await r.call(good) == 200  # a known key is not affected
    r.clock.advance(31)
    assert await burst(r, 3) == {502}
    assert r.idp.requests["/jwks"] == 3
    r.idp.jwks_garbage = False
    r.clock.advance(31)
    assert await burst(r, 3) == {401}  # a healthy key set again: an unknown kid is a forgery
    assert r.idp.requests["/jwks"] == 4
    assert r.keys.failures == 2


@pytest.mark.parametrize("fault", ["503", "garbage", "refused"])
async def test_known_keys_outlive_the_cache_lifetime_while_the_provider_is_broken(
    rig: Any, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    r: Rig = await rig()
    good = r.token()
    assert await r.call(good) == 200
    if fault == "503":
        r.idp.down = True
    elif fault == "garbage":
        r.idp.jwks_garbage = True
    else:
        await r.idp_server.close()
    caplog.set_level(logging.WARNING, logger="oidcproxy")
    r.clock.advance(3600 + 1)  # past the key set's lifetime: an hour without Cache-Control
    assert await r.call(good) == 200  # served at once; the refresh runs in the background
    await r.keys.idle()
    assert r.keys.failures == 1
    assert "key set refresh failed: jwks:" in caplog.text
    assert "still using the 1 known keys" in caplog.text
    r.clock.advance(DAY - 3600)  # almost a day of outage (--oidc-jwks-stale-if-error, 24h)
    assert await r.call(good) == 200
    await r.keys.idle()
    assert r.keys.failures == 2
    assert r.keys.stale_served == 1
    r.clock.advance(3600)  # lifetime + a day: the old keys are no longer trusted
    # no answer at all is "try again" (503 with Retry-After); a wrong answer stays 502
    assert await r.call(good) == (503 if fault == "refused" else 502)
    assert r.keys.failures == 3


async def test_stale_if_error_zero_drops_keys_at_the_end_of_their_lifetime(rig: Any) -> None:
    r: Rig = await rig(oidc_jwks_stale_if_error="0s")
    good = r.token()
    assert await r.call(good) == 200
    r.idp.down = True
    r.clock.advance(3600 + 1)
    assert await r.call(good) == 502


async def test_no_cache_key_set_is_revalidated_in_the_background(rig: Any) -> None:
    r: Rig = await rig()
    r.idp.jwks_cache_control = "no-cache"
    good = r.token()
    assert await r.call(good) == 200
    r.idp.hold["/jwks"] = held = asyncio.Event()  # the provider answers only when the test says
    try:
        r.clock.advance(61)  # past --oidc-jwks-min-refetch, the earliest revalidation
        status = await asyncio.wait_for(r.call(good), 5)  # a proxy that waits times out here
        assert status == 200
        assert r.idp.requests["/jwks"] == 2 or r.keys.attempts == 2  # asked, or about to ask
        assert r.keys.fetches == 1  # and not answered yet
        assert await r.call(good) == 200
    finally:
        held.set()
    await r.keys.idle()
    assert r.keys.fetches == 2
    assert await r.call(good) == 200
    assert r.idp.requests["/jwks"] == 2  # one revalidation per interval, however many requests


async def test_huge_key_set_is_refused_and_known_keys_stay_in_use(
    rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    r: Rig = await rig()
    good = r.token()
    assert await r.call(good) == 200
    r.idp.padding["/jwks"] = 10 * 1024 * 1024
    r.idp.rotate_keys()  # a token with the new kid makes the proxy fetch the key set again
    caplog.set_level(logging.WARNING, logger="oidcproxy")
    r.clock.advance(31)
    assert await r.call(r.token()) == 502
    assert r.idp.requests["/jwks"] == 2  # refused, not retried
    line = next(x for x in caplog.messages if x.startswith("key set refresh failed"))
    assert answered(line, f"jwks: {r.issuer}/jwks") > 10 * 1024 * 1024  # the padding and the keys
    assert await r.call(good) == 200
    r.clock.advance(3600)
    assert await r.call(good) == 200  # past the lifetime too, while the key set stays too large
    r.idp.padding.clear()
    r.clock.advance(31)
    assert await r.call(r.token()) == 200


async def test_oversized_discovery_document_is_refused(rig: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="oidcproxy")
    strict: Rig = await rig()
    strict.idp.padding["/.well-known/openid-configuration"] = 2 * 1024 * 1024
    async with aiohttp.ClientSession() as cli:
        assert (await cli.get(strict.proxy.make_url("/ready"))).status == 503
    line = next(x for x in caplog.messages if x.startswith("not ready"))
    assert answered(line, f"discovery: {strict.issuer}/.well-known/openid-configuration") > 2 * 1024**2
    assert strict.idp.requests["/.well-known/openid-configuration"] == 1  # refused, not retried
    roomy: Rig = await rig(provider_max_response_size=4 * 1024 * 1024)
    roomy.idp.padding["/.well-known/openid-configuration"] = 2 * 1024 * 1024
    async with aiohttp.ClientSession() as cli:
        assert (await cli.get(roomy.proxy.make_url("/ready"))).status == 200


async def sign_in(r: Rig, browser: aiohttp.ClientSession) -> aiohttp.ClientResponse:
    async def login(session: aiohttp.ClientSession, authorize_url: str, *, login: str) -> str:
        return await dev_login(session, authorize_url, email=login)

    return await walk_login(browser, r.proxy.make_url("/"), "/who", login, login="alice@example.com")


@pytest.mark.parametrize("endpoint", ["/token", "/userinfo"])
async def test_oversized_token_and_userinfo_answers_are_refused(
    rig: Any, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A groups claim the ID token lacks makes the proxy ask userinfo once, at sign-in.
    r: Rig = await rig(oidc_groups_claim="roles" if endpoint == "/userinfo" else "groups")
    r.idp.padding[endpoint] = 2 * 1024 * 1024
    caplog.set_level(logging.WARNING, logger="oidcproxy")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        done = await sign_in(r, browser)
        assert done.status == 502
        assert r.idp.requests[endpoint] == 1
        what = {"/token": "token endpoint", "/userinfo": "userinfo"}[endpoint]
        line = next(x for x in caplog.messages if "IdPUnavailable" in x)
        assert answered(line, f"{what}: {r.issuer}{endpoint}") > 2 * 1024 * 1024
        r.idp.padding.clear()
        browser.cookie_jar.clear()
        assert (await sign_in(r, browser)).status == 200
