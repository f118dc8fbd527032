"""Tokens with several providers: bearer JWTs from any configured provider, judged by that provider's
audiences and rules, and Entra ID's two issuers of one tenant.

Entra ID cannot run here, so a provider "configured to issue each form" is the npm oidc-provider
behind IdPTap, which re-signs the ID token it issues with the provider's own key and the Entra
issuer the test picks (v1 `https://sts.windows.net/<tenant>/` or v2
`https://login.microsoftonline.com/<tenant>/v2.0`). Bearer tokens are crafted and signed with the
node provider's key (read from its key file) and the embedded provider's key (its own KeyRing).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from oidcproxy.config import Settings
from oidcproxy.idp import IdPClient, IdPConfig
from oidcproxy.idp.app import DevIdP
from oidcproxy.model import system_clock
from oidcproxy.oidc import entra_issuers
from oidcproxy.web.app import build_app
from oidcproxy.web.appkeys import METRICS
from tests.factories import COOKIE_SECRET, walk_login
from tests.support.nodeidp import NodeIdP, provider_login
from tests.support.oidcflow import IdPTap, provider_key

TENANT = "0b6f1b7a-5c2e-4d4a-9d1e-3f3f0c0ffee0"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
V2, V1 = entra_issuers(TENANT)


def node_token(idp: NodeIdP, claims: dict[str, Any]) -> str:
    key, kid = provider_key(idp)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def dev_token(dev: DevIdP, claims: dict[str, Any]) -> str:
    signing = dev.keys.current
    pem = signing.key.as_pem(private=True)
    return jwt.encode(claims, pem, algorithm=signing.alg, headers={"kid": signing.kid})


def person(iss: str, aud: str, email: str = "bob@example.com", **extra: Any) -> dict[str, Any]:
    now = int(system_clock())
    return {"iss": iss, "aud": aud, "sub": email, "email": email, "email_verified": True, "iat": now,
            "exp": now + 600, **extra}  # fmt: skip


async def entra_login(browser: aiohttp.ClientSession, url: str, *, login: str) -> str:
    """node's sign-in; its callback without node's own `iss` (Entra sends none: it does not advertise
    RFC 9207, and this stand-in's iss would name node, not the tenant)."""
    back = URL(await provider_login(browser, url, login=login))
    return str(back.with_query({k: v for k, v in back.query.items() if k != "iss"}))


async def sign_in(browser: aiohttp.ClientSession, proxy: TestServer, login: str) -> aiohttp.ClientResponse:
    return await walk_login(browser, proxy.make_url("/"), "/who", entra_login, login=login)


def flat(upstream: TestServer, **extra: Any) -> dict[str, Any]:
    return {
        "upstream": [str(upstream.make_url("/"))],
        "cookie_secret": COOKIE_SECRET,
        "cookie_secure": False,
        **extra,
    }


async def test_bearer_tokens_from_each_provider_with_its_own_audiences_and_rules(
    node: Any, aiohttp_server: Any, upstream: TestServer, unused_tcp_port_factory: Any
) -> None:
    idp = node()
    port = unused_tcp_port_factory()
    dev = DevIdP(IdPConfig(issuer=f"http://127.0.0.1:{port}", clients=(IdPClient("at-dev", "s"),)))
    await aiohttp_server(dev.build_app(), port=port)
    providers = [
        {"id": "node", "oidc_issuer_url": idp.issuer, "client_id": idp.client_id, "client_secret": "x",
         "email_domains": ["example.com"], "allowed_groups": ["admins"]},
        {"id": "dev", "oidc_issuer_url": dev.config.issuer, "client_id": "at-dev", "client_secret": "s",
         "email_domains": ["*"]},
    ]  # fmt: skip
    extra = {"skip_jwt_bearer_tokens": True, "metrics_address": "127.0.0.1:0"}
    settings = Settings.from_sources(flat(upstream, **extra), providers=providers)
    proxy = await aiohttp_server(build_app(settings))

    async def status(token: str) -> int:
        async with aiohttp.ClientSession() as http:
            bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            async with http.get(proxy.make_url("/api"), headers=bearer) as resp:
                return resp.status

    # bob is in no group: node's rules (admins only) refuse him, dev's admit any email
    assert await status(node_token(idp, person(idp.issuer, idp.client_id))) == 403
    assert await status(node_token(idp, person(idp.issuer, idp.client_id, groups=["admins"]))) == 200
    assert await status(dev_token(dev, person(dev.config.issuer, "at-dev"))) == 200
    # each issuer with its own audience only, and its own key only
    assert await status(dev_token(dev, person(dev.config.issuer, idp.client_id))) == 401
    assert await status(node_token(idp, person(dev.config.issuer, "at-dev"))) == 401
    # the auth decisions carry the provider whose token it was (none for the refused ones)
    registry = proxy.app[METRICS].registry
    assert registry is not None
    decisions = {
        (x.labels["outcome"], x.labels["provider"]): x.value
        for family in registry.collect()
        for x in family.samples
        if x.name == "oidcproxy_auth_decisions_total" and x.value
    }
    assert decisions == {("bearer", "node"): 1, ("bearer", "dev"): 1, ("forbidden", "node"): 1,
                         ("unauthenticated", ""): 2}  # fmt: skip


async def entra_proxy(
    node: Any, aiohttp_server: Any, upstream: TestServer, id_token_iss: str
) -> tuple[NodeIdP, TestServer]:
    idp = node()
    tap = await IdPTap(idp.issuer).start(aiohttp_server)

    def as_entra(reply: dict[str, Any]) -> dict[str, Any]:
        claims = jwt.decode(reply["id_token"], options={"verify_signature": False})
        return {**reply, "id_token": node_token(idp, {**claims, "iss": id_token_iss})}

    tap.rewrite = as_entra
    entry = {
        "id": "entra",
        "type": "entra",
        "display_name": "Contoso",
        "oidc_issuer_url": V2,
        "skip_oidc_discovery": True,
        "login_url": f"{idp.issuer}/auth",
        "redeem_url": tap.url("/token"),
        "oidc_jwks_url": f"{idp.issuer}/jwks",
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "oidc_extra_audiences": ["api://contoso-dashboard"],
        "email_domains": ["example.com"],
    }
    settings = Settings.from_sources(flat(upstream, skip_jwt_bearer_tokens=True), providers=[entry])
    return idp, await aiohttp_server(build_app(settings))


@pytest.mark.parametrize("iss", [V1, V2], ids=["v1", "v2"])
async def test_entra_provider_signs_in_with_either_issuer_of_its_tenant(
    node: Any, aiohttp_server: Any, upstream: TestServer, iss: str
) -> None:
    _, proxy = await entra_proxy(node, aiohttp_server, upstream, iss)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        done = await sign_in(browser, proxy, "alice")
        assert done.status == 200
        assert (await done.json())["headers"]["X-Forwarded-Email"] == "alice@example.com"


async def test_entra_id_token_of_another_tenant_is_refused(
    node: Any, aiohttp_server: Any, upstream: TestServer
) -> None:
    _, proxy = await entra_proxy(node, aiohttp_server, upstream, entra_issuers(OTHER_TENANT)[1])
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        assert (await sign_in(browser, proxy, "alice")).status == 400


async def test_entra_bearer_tokens_v1_and_v2_with_api_audiences(
    node: Any, aiohttp_server: Any, upstream: TestServer
) -> None:
    idp, proxy = await entra_proxy(node, aiohttp_server, upstream, V2)

    async def status(claims: dict[str, Any]) -> int:
        token = node_token(idp, claims)
        async with aiohttp.ClientSession() as http:
            bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            async with http.get(proxy.make_url("/api"), headers=bearer) as resp:
                return resp.status

    assert await status(person(V1, "api://contoso-dashboard")) == 200
    assert await status(person(V2, "api://contoso-dashboard")) == 200
    assert await status(person(V2, idp.client_id)) == 200
    assert await status(person(V1, "api://someone-else")) == 401
    assert await status(person(entra_issuers(OTHER_TENANT)[1], "api://contoso-dashboard")) == 401
    assert await status(person(V1, "api://contoso-dashboard", email="eve@evil.test")) == 403
