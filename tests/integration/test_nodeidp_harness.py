"""The oidc-provider harness itself: a real code flow against the npm provider, by hand.

Proves tests/support/nodeidp.py before the proxy's integration tests lean on it. Uses no oidcproxy code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import aiohttp
import pytest

from tests.support.nodeidp import NodeIdP, provider_login, provider_logout, start_node_idp

ALICE = {
    "email": "alice@corp.test",
    "email_verified": True,
    "name": "Alice Liddell",
    "preferred_username": "alice",
    "groups": ["admins", "dashboards"],
}


@pytest.fixture
def idp() -> Iterator[NodeIdP]:
    with start_node_idp(users={"alice": ALICE}, extra_groups=3) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe=True: the provider lives on 127.0.0.1 and the default jar ignores IP-host cookies.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _basic(idp: NodeIdP) -> dict[str, str]:
    # client_secret_basic: RFC 6749 2.3.1 form-encodes id and secret before Base64.
    pair = f"{quote_plus(idp.client_id)}:{quote_plus(idp.client_secret)}"
    return {"Authorization": f"Basic {base64.b64encode(pair.encode()).decode()}"}


def _segment(jwt: str, index: int) -> dict[str, Any]:
    part = jwt.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _claims(jwt: str) -> dict[str, Any]:
    return _segment(jwt, 1)


async def _code_flow(
    idp: NodeIdP,
    browser: aiohttp.ClientSession,
    login: str,
    scope: str = "openid email profile",
    client_secret_post: bool = False,
) -> dict[str, Any]:
    """Authorize with PKCE, sign in through the provider's pages, redeem the code; return tokens."""
    async with browser.get(idp.discovery_url) as resp:
        meta = await resp.json()
    assert meta["issuer"] == idp.issuer
    redirect_uri = f"http://127.0.0.1:{secrets.randbelow(20000) + 40000}/oauth2/callback"
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier = secrets.token_urlsafe(32)  # RFC 7636 4.1: 43 to 128 characters
    query = {
        "client_id": idp.client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    location = await provider_login(
        browser, f"{meta['authorization_endpoint']}?{urlencode(query)}", login=login
    )
    assert location.startswith(redirect_uri + "?")
    params = parse_qs(urlsplit(location).query)
    assert params["state"] == [state]
    assert params["iss"] == [idp.issuer]  # RFC 9207, advertised in discovery
    form = {
        "grant_type": "authorization_code",
        "code": params["code"][0],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    if client_secret_post:
        form |= {"client_id": idp.client_id, "client_secret": idp.client_secret}
    headers = {} if client_secret_post else _basic(idp)
    async with browser.post(meta["token_endpoint"], data=form, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        tokens: dict[str, Any] = await resp.json()
    assert _claims(tokens["id_token"])["nonce"] == nonce
    return tokens


async def test_code_flow_puts_profile_and_groups_in_the_id_token(
    idp: NodeIdP, browser: aiohttp.ClientSession
) -> None:
    tokens = await _code_flow(idp, browser, "alice")
    claims = _claims(tokens["id_token"])
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == idp.client_id
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@corp.test"
    assert claims["email_verified"] is True
    assert claims["preferred_username"] == "alice"
    assert claims["groups"] == ["admins", "dashboards", "group-0001", "group-0002", "group-0003"]
    assert tokens["refresh_token"]


async def test_unknown_login_gets_a_default_account(idp: NodeIdP, browser: aiohttp.ClientSession) -> None:
    claims = _claims((await _code_flow(idp, browser, "bob"))["id_token"])
    assert claims["email"] == "bob@example.com"
    assert claims["email_verified"] is True
    assert claims["groups"] == ["group-0001", "group-0002", "group-0003"]


async def test_refresh_token_rotates(idp: NodeIdP, browser: aiohttp.ClientSession) -> None:
    first = await _code_flow(idp, browser, "alice")
    token_url = f"{idp.issuer}/token"
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    async with browser.post(token_url, data=form, headers=_basic(idp)) as resp:
        assert resp.status == 200, await resp.text()
        second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert _claims(second["id_token"])["email"] == "alice@corp.test"
    async with browser.post(token_url, data=form, headers=_basic(idp)) as resp:
        assert resp.status == 400  # the rotated-out token is spent
        assert (await resp.json())["error"] == "invalid_grant"


async def test_logout_returns_to_any_port_and_ends_the_provider_session(
    idp: NodeIdP, browser: aiohttp.ClientSession
) -> None:
    tokens = await _code_flow(idp, browser, "alice")
    back = f"http://127.0.0.1:{secrets.randbelow(20000) + 40000}/signed-out"
    query = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": back, "state": "s1"}
    location = await provider_logout(browser, f"{idp.issuer}/session/end?{urlencode(query)}")
    assert location == f"{back}?state=s1"
    # With alice's provider session still alive this would return at once with her code.
    tokens = await _code_flow(idp, browser, "bob")
    assert _claims(tokens["id_token"])["sub"] == "bob"


async def test_restart_with_new_key_keeps_port_and_changes_kid(
    idp: NodeIdP, browser: aiohttp.ClientSession
) -> None:
    async with browser.get(f"{idp.issuer}/jwks") as resp:
        (old,) = (await resp.json())["keys"]
    issuer = idp.issuer
    idp.restart(new_key=True)
    assert idp.issuer == issuer
    async with browser.get(f"{idp.issuer}/jwks") as resp:
        (new,) = (await resp.json())["keys"]
    assert new["kid"] != old["kid"]
    fresh = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with fresh:
        tokens = await _code_flow(idp, fresh, "alice")
    assert _segment(tokens["id_token"], 0)["kid"] == new["kid"]


async def test_es256_client_secret_post_and_no_consent_page(
    browser: aiohttp.ClientSession,
) -> None:
    client = {
        "client_id": "poster",
        "client_secret": "poster-secret",
        "token_endpoint_auth_method": "client_secret_post",
        "redirect_uris": ["http://127.0.0.1/oauth2/callback"],
    }
    with start_node_idp(clients=[client], signing_alg="ES256", skip_consent=True) as idp:
        tokens = await _code_flow(idp, browser, "erin", client_secret_post=True)
    assert _segment(tokens["id_token"], 0)["alg"] == "ES256"
    assert _claims(tokens["id_token"])["email"] == "erin@example.com"


async def test_many_groups_make_an_id_token_over_8_kib(browser: aiohttp.ClientSession) -> None:
    # 400 synthetic groups give about 7.5 KiB (each "group-NNNN" costs ~17 bytes once encoded).
    with start_node_idp(extra_groups=500) as idp:
        tokens = await _code_flow(idp, browser, "carol@corp.test")
    claims = _claims(tokens["id_token"])
    assert len(claims["groups"]) == 500
    assert claims["email"] == "carol@corp.test"
    assert len(tokens["id_token"]) > 8 * 1024
