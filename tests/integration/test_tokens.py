"""Token validation, claim mapping and authorization against the real npm oidc-provider.

Each test starts its own provider with the users and clients it needs. The helpers it shares
with test_refresh.py and test_bearer.py are in tests/support/oidcflow.py and tests/integration/conftest.py.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from typing import Any

import aiohttp
import jwt
import pytest
from yarl import URL

from oidcproxy.model import FakeClock, system_clock
from oidcproxy.web.appkeys import OIDC
from tests.support.nodeidp import DEFAULT_CLIENT, NodeIdP
from tests.support.oidcflow import KUBECTL, IdPTap, code_flow_id_token, provider_key, sign_in

HTML = {"Accept": "text/html"}


def craft(idp: NodeIdP, claims: dict[str, Any], **header: Any) -> str:
    key, kid = provider_key(idp)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, **header})


# --- claims and authorization -------------------------------------------------------------------


async def test_nested_groups_string_groups_and_prefixes(node: Any, make_proxy: Any, browser: Any) -> None:
    idp = node(extra_claims=["realm_access", "team_csv"])
    nested = await make_proxy(
        idp,
        oidc_groups_claim="realm_access.roles",
        oidc_groups_prefix="kc:",
        oidc_username_claim="preferred_username",
    )
    seen = await (await sign_in(browser, nested, "kc")).json()
    assert seen["headers"]["X-Forwarded-Groups"] == "kc:realm-admin,kc:viewer"
    assert seen["headers"]["X-Forwarded-User"] == f"{idp.issuer}#ops, audit"  # not email: issuer#
    browser.cookie_jar.clear()
    flat = await make_proxy(idp, oidc_groups_claim="team_csv")
    seen = await (await sign_in(browser, flat, "kc")).json()
    assert seen["headers"]["X-Forwarded-Groups"] == "ops,audit"
    assert seen["headers"]["X-Forwarded-User"] == "kc@example.com"  # email: no prefix


@pytest.mark.parametrize(
    ("policy", "prefix", "user"),
    [("", "", "{issuer}#alice"), ("Prefix", "oidc:", "oidc:alice"), ("NoPrefix", "", "alice")],
)
async def test_username_prefix_policies(
    node: Any, make_proxy: Any, browser: Any, policy: str, prefix: str, user: str
) -> None:
    idp = node()
    proxy = await make_proxy(
        idp,
        oidc_username_claim="preferred_username",
        oidc_username_prefix_policy=policy,
        oidc_username_prefix=prefix,
    )
    seen = await (await sign_in(browser, proxy, "alice")).json()
    assert seen["headers"]["X-Forwarded-User"] == user.format(issuer=idp.issuer)


@pytest.mark.parametrize(
    ("rule", "status"),
    [("email_verified=true", 200), ("hd=example.com", 403), ("preferred_username=bob", 403)],
    ids=["present", "absent", "wrong-value"],
)
async def test_required_claim(node: Any, make_proxy: Any, browser: Any, rule: str, status: int) -> None:
    proxy = await make_proxy(node(), oidc_required_claim=[rule])
    final = await sign_in(browser, proxy, "alice")
    assert final.status == status
    if status == 403:
        assert "Access denied" in await final.text()


async def test_allowed_groups(node: Any, make_proxy: Any, browser: Any) -> None:
    idp = node()
    proxy = await make_proxy(idp, allowed_group=["admins", "ops"])
    assert (await sign_in(browser, proxy, "alice")).status == 200
    browser.cookie_jar.clear()
    refused = await sign_in(browser, proxy, "bob")
    assert refused.status == 403


async def test_extra_audience_accepted_and_foreign_audience_refused(node: Any, make_proxy: Any) -> None:
    idp = node(clients=[DEFAULT_CLIENT, KUBECTL])
    token = await code_flow_id_token(idp, KUBECTL, "alice")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "kubectl"
    bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    accepting = await make_proxy(idp, skip_jwt_bearer_tokens=True, oidc_extra_audience=["kubectl"])
    async with aiohttp.ClientSession() as cli:
        ok = await cli.get(accepting.make_url("/kube"), headers=bearer)
        assert ok.status == 200
        assert (await ok.json())["headers"]["X-Forwarded-Email"] == "alice@example.com"
        strict = await make_proxy(idp, skip_jwt_bearer_tokens=True)
        refused = await cli.get(strict.make_url("/kube"), headers=bearer)
        assert refused.status == 401
        assert (await refused.json())["error"] == "NotAuthenticated"


async def test_token_without_sub_is_refused_with_a_page_and_log_saying_so(
    node: Any, make_proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    idp = node()
    proxy = await make_proxy(idp, skip_jwt_bearer_tokens=True)
    now = int(system_clock())
    token = craft(
        idp, {"iss": idp.issuer, "aud": idp.client_id, "iat": now, "exp": now + 60, "email": "x@example.com"}
    )
    caplog.set_level(logging.INFO, logger="oidcproxy")
    async with aiohttp.ClientSession() as cli:
        resp = await cli.get(proxy.make_url("/"), headers={"Authorization": f"Bearer {token}"})
        body = await resp.json()
    assert resp.status == 401
    assert "without a subject (sub) claim" in body["message"]
    assert "token has no sub claim" in caplog.text
    assert token not in caplog.text


# --- the Entra ID shape: access token from another issuer, validated through validator options ---


async def test_access_token_jwt_from_another_issuer_goes_through_validator_options(
    node: Any, make_proxy: Any, browser: Any, aiohttp_server: Any
) -> None:
    idp = node()
    tap = await IdPTap(idp.issuer).start(aiohttp_server)
    sts = "https://sts.windows.net/tenant-1/"

    def entra_access_token(reply: dict[str, Any]) -> dict[str, Any]:
        claims = jwt.decode(reply["id_token"], options={"verify_signature": False})
        now = int(system_clock())
        access = {"iss": sts, "aud": "api://headlamp", "sub": claims["sub"], "iat": now, "exp": now + 600}
        return {**reply, "access_token": craft(idp, access)}

    tap.rewrite = entra_access_token
    manual = {
        "skip_oidc_discovery": True,
        "login_url": f"{idp.issuer}/auth",
        "redeem_url": tap.url("/token"),
        "oidc_jwks_url": f"{idp.issuer}/jwks",
        "oidc_use_access_token": True,
    }
    proxy = await make_proxy(
        idp, oidc_validator_issuer_url=sts, oidc_validator_client_id="api://headlamp", **manual
    )
    seen = await (await sign_in(browser, proxy, "alice")).json()
    passed = seen["headers"]["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(passed, options={"verify_signature": False})["iss"] == sts
    browser.cookie_jar.clear()
    unvalidated = await make_proxy(idp, **manual)  # the access token's iss/aud are not ours
    assert (await sign_in(browser, unvalidated, "alice")).status == 400


async def test_opaque_access_token_passes_as_it_is(node: Any, make_proxy: Any, browser: Any) -> None:
    proxy = await make_proxy(node(), oidc_use_access_token=True)
    seen = await (await sign_in(browser, proxy, "alice")).json()
    token = seen["headers"]["Authorization"].removeprefix("Bearer ")
    assert token.count(".") != 2  # oidc-provider's access tokens are opaque


# --- providers without discovery; userinfo fallback -----------------------------------------------


async def test_manual_endpoints_and_userinfo_fallback_once_at_login(
    node: Any, make_proxy: Any, browser: Any, aiohttp_server: Any
) -> None:
    idp = node()
    tap = await IdPTap(idp.issuer).start(aiohttp_server)
    proxy = await make_proxy(
        idp,
        skip_oidc_discovery=True,
        login_url=f"{idp.issuer}/auth",
        redeem_url=tap.url("/token"),
        oidc_jwks_url=tap.url("/jwks"),
        profile_url=tap.url("/me"),
        auth_extra_param=["prompt=login", "ui_locales=de"],
        email_domain=["*"],
        insecure_allow_unverified_email=True,
        oidc_email_claim="preferred_username",  # present: no userinfo call
    )
    start = await browser.get(proxy.make_url("/oauth2/start"), allow_redirects=False)
    query = URL(start.headers["Location"]).query
    assert (query["prompt"], query["ui_locales"]) == ("login", "de")
    assert "/.well-known/openid-configuration" not in str(tap.seen)
    browser.cookie_jar.clear()
    await sign_in(browser, proxy, "alice")
    assert tap.seen["GET /me"] == 0
    assert tap.seen["POST /token"] == 1 and tap.seen["GET /jwks"] == 1
    browser.cookie_jar.clear()
    fallback = await make_proxy(
        idp,
        skip_oidc_discovery=True,
        login_url=f"{idp.issuer}/auth",
        redeem_url=f"{idp.issuer}/token",
        oidc_jwks_url=f"{idp.issuer}/jwks",
        profile_url=tap.url("/me"),
        email_domain=["*"],
        allowed_group=["dev"],
    )
    final = await sign_in(browser, fallback, "nomail")  # no email in the ID token: ask userinfo
    assert tap.seen["GET /me"] == 1
    assert final.status == 403  # userinfo has no email either, so the email rules refuse
    await browser.get(fallback.make_url("/again"))
    assert tap.seen["GET /me"] == 1


async def test_userinfo_supplies_email_and_groups_missing_from_the_id_token(
    node: Any, make_proxy: Any, browser: Any
) -> None:
    idp = node(conform_id_token_claims=True)  # scope claims only at userinfo, as some providers do
    proxy = await make_proxy(idp, allowed_group=["admins"], pass_authorization_header=True)
    final = await sign_in(browser, proxy, "alice")
    assert final.status == 200
    headers = (await final.json())["headers"]
    id_claims = jwt.decode(
        headers["Authorization"].removeprefix("Bearer "), options={"verify_signature": False}
    )
    assert "email" not in id_claims and "groups" not in id_claims
    assert headers["X-Forwarded-Email"] == "alice@example.com"
    assert headers["X-Forwarded-Groups"] == "admins,dev"


# --- keys ----------------------------------------------------------------------------------------


async def test_key_rotation_mid_session(node: Any, make_proxy: Any, browser: Any) -> None:
    idp = node()
    clock = FakeClock(system_clock())
    proxy = await make_proxy(idp, clock)
    assert (await sign_in(browser, proxy, "alice")).status == 200
    old_kid = provider_key(idp)[1]
    idp.restart(new_key=True, keep_old_keys=True)
    assert provider_key(idp)[1] != old_kid
    assert (await browser.get(proxy.make_url("/still"))).status == 200  # the session needs no keys
    clock.advance(31)  # past the refetch rate limit
    browser.cookie_jar.clear()
    again = await sign_in(browser, proxy, "alice")  # ID token signed with the new kid
    assert again.status == 200
    keys = proxy.app[OIDC].keys
    assert keys is not None and keys.fetches == 2


async def test_burst_of_random_kids_causes_at_most_one_refetch(node: Any, make_proxy: Any) -> None:
    import asyncio

    idp = node()
    clock = FakeClock(system_clock())
    proxy = await make_proxy(idp, clock, skip_jwt_bearer_tokens=True)
    now = int(system_clock())
    person = {"sub": "alice", "email": "alice@example.com", "email_verified": True}
    good = craft(idp, {"iss": idp.issuer, "aud": idp.client_id, "iat": now, "exp": now + 60, **person})
    async with aiohttp.ClientSession() as cli:
        assert (await cli.get(proxy.make_url("/"), headers={"Authorization": f"Bearer {good}"})).status == 200
        keys = proxy.app[OIDC].keys
        assert keys is not None and keys.fetches == 1
        clock.advance(31)

        async def forged() -> int:
            claims = {"iss": idp.issuer, "aud": idp.client_id, "sub": "x", "iat": now, "exp": now + 60}
            token = craft(idp, claims, kid=secrets.token_hex(8))
            async with cli.get(proxy.make_url("/"), headers={"Authorization": f"Bearer {token}"}) as r:
                return r.status

        statuses = await asyncio.gather(*(forged() for _ in range(40)))
        assert set(statuses) == {401}
        statuses = await asyncio.gather(*(forged() for _ in range(20)))
        assert set(statuses) == {401}
    assert keys.fetches <= 2


# --- TLS to the provider ---------------------------------------------------------------------------


async def test_provider_over_tls_needs_its_ca(
    node: Any, make_proxy: Any, browser: Any, tmp_path: Any
) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    idp = node(tls={"cert": str(cert_pem), "key": str(key_pem)})
    assert idp.issuer.startswith("https://")
    untrusted = await make_proxy(idp)
    async with aiohttp.ClientSession() as cli:
        assert (await cli.get(untrusted.make_url("/ready"))).status == 503
    trusted = await make_proxy(idp, provider_ca_file=[str(ca_pem)])
    async with aiohttp.ClientSession() as cli:
        assert (await cli.get(trusted.make_url("/ready"))).status == 200
    ssl_ctx = ssl.create_default_context()
    ca.configure_trust(ssl_ctx)
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(ssl=ssl_ctx)
    ) as tls_browser:
        final = await sign_in(tls_browser, trusted, "alice")
        assert final.status == 200
