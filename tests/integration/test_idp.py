"""The development provider over real sockets: discovery, code flow with PKCE, refresh rotation,
keys, switches and the standalone command's refusals."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web

from oidcproxy.idp import DevIdP, IdPClient, IdPConfig, build_app, run_standalone, subject_for
from oidcproxy.model import FakeClock, system_clock

CALLBACK = "http://127.0.0.1:8123/oauth2/callback"
SIGNED_OUT = "http://127.0.0.1:8123/signed-out"
CLIENT = IdPClient(
    client_id="proxy",
    client_secret="proxy-secret-value",
    redirect_uris=(CALLBACK,),
    post_logout_redirect_uris=(SIGNED_OUT,),
)


@dataclass
class Provider:
    issuer: str
    idp: DevIdP
    clock: FakeClock
    http: aiohttp.ClientSession


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_provider(
    aiohttp_server: Any, unused_tcp_port_factory: Callable[[], int], http: aiohttp.ClientSession
) -> Callable[..., Any]:
    async def make(signing_alg: str = "RS256", prefix: str = "", rotate: bool = True) -> Provider:
        port = unused_tcp_port_factory()
        issuer = f"http://127.0.0.1:{port}{prefix}"
        clock = FakeClock(system_clock())
        config = IdPConfig(
            issuer=issuer,
            clients=(CLIENT,),
            signing_alg=signing_alg,
            rotate_refresh_tokens=rotate,
            clock=clock,
        )
        app, idp = build_app(config)
        if prefix:
            outer = web.Application()
            outer.add_subapp(prefix, app)
            app = outer
        await aiohttp_server(app, port=port)
        return Provider(issuer=issuer, idp=idp, clock=clock, http=http)

    return make


@pytest.fixture
async def provider(make_provider: Callable[..., Any]) -> Provider:
    result: Provider = await make_provider()
    return result


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.action = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        if tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"] or ""] = a.get("value") or ""


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize_params(challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT.client_id,
        "redirect_uri": CALLBACK,
        "scope": "openid email profile groups",
        "state": "st-1",
        "nonce": "nonce-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return {**params, **extra}


async def sign_in(p: Provider, params: dict[str, str], email: str = "alice@example.com") -> str:
    """GET the form, POST it back as a browser would, return the code from the redirect."""
    async with p.http.get(f"{p.issuer}/authorize", params=params, allow_redirects=False) as r:
        assert r.status == 200
        page = await r.text()
    assert "Development provider" in page and "not for production" in page
    form = _Form()
    form.feed(page)
    assert form.action == f"{p.issuer}/authorize"
    data = {**form.fields, "login_email": email, "login_password": "anything"}
    data |= {"login_name": "Alice Liddell", "login_groups": "admins, devs ,"}
    async with p.http.post(form.action, data=data, allow_redirects=False) as r:
        assert r.status == 302
        location = r.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [params["state"]]
    return query["code"][0]


async def token(p: Provider, data: dict[str, str], basic: bool = True) -> aiohttp.ClientResponse:
    headers = {}
    if basic:
        headers["Authorization"] = aiohttp.encode_basic_auth(CLIENT.client_id, CLIENT.client_secret)
    else:
        data = {**data, "client_id": CLIENT.client_id, "client_secret": CLIENT.client_secret}
    async with p.http.post(f"{p.issuer}/token", data=data, headers=headers) as r:
        await r.read()
        return r


async def exchange(p: Provider, code: str, verifier: str, basic: bool = True) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    return await token(p, {**form, "code_verifier": verifier}, basic)


async def verify(p: Provider, id_token: str, leeway: int = 0) -> dict[str, Any]:
    """Check with pyjwt as a relying party would; `leeway` covers a FakeClock moved ahead."""
    async with p.http.get(f"{p.issuer}/jwks") as r:
        jwks = jwt.PyJWKSet.from_dict(await r.json())
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        id_token,
        key,
        algorithms=[p.idp.config.signing_alg],
        audience=CLIENT.client_id,
        issuer=p.issuer,
        leeway=leeway,
    )
    return claims


def half_hash(value: str) -> str:
    digest = hashlib.sha256(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


async def test_discovery_has_the_required_fields(provider: Provider) -> None:
    async with provider.http.get(f"{provider.issuer}/.well-known/openid-configuration") as r:
        meta = await r.json()
    i = provider.issuer
    assert meta["issuer"] == i
    assert meta["authorization_endpoint"] == f"{i}/authorize"
    assert meta["token_endpoint"] == f"{i}/token"
    assert meta["jwks_uri"] == f"{i}/jwks"
    assert meta["userinfo_endpoint"] == f"{i}/userinfo"
    assert meta["end_session_endpoint"] == f"{i}/end_session"
    assert meta["response_types_supported"] == ["code"]
    assert meta["subject_types_supported"] == ["public"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post"} == set(meta["token_endpoint_auth_methods_supported"])
    assert {"authorization_code", "refresh_token"} <= set(meta["grant_types_supported"])
    assert {"openid", "email", "profile", "groups"} <= set(meta["scopes_supported"])
    assert {"sub", "email", "groups", "nonce", "at_hash"} <= set(meta["claims_supported"])


async def test_mounted_under_a_prefix(make_provider: Callable[..., Any]) -> None:
    p: Provider = await make_provider(prefix="/dev-idp")
    assert p.issuer.endswith("/dev-idp")
    async with p.http.get(f"{p.issuer}/.well-known/openid-configuration") as r:
        assert r.status == 200
        assert (await r.json())["token_endpoint"] == f"{p.issuer}/token"
    verifier, challenge = pkce()
    code = await sign_in(p, authorize_params(challenge))
    r = await exchange(p, code, verifier)
    assert r.status == 200


async def test_code_flow_issues_a_verifiable_id_token(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    r = await exchange(provider, code, verifier)
    assert r.status == 200
    assert r.headers["Cache-Control"] == "no-store"
    body = await r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"]
    claims = await verify(provider, body["id_token"])
    now = int(provider.clock())
    assert claims["iss"] == provider.issuer
    assert claims["sub"] == subject_for("alice@example.com")
    assert claims["aud"] == CLIENT.client_id
    assert claims["iat"] == now
    assert claims["exp"] == now + 3600
    assert claims["auth_time"] == now
    assert claims["nonce"] == "nonce-1"
    assert claims["at_hash"] == half_hash(body["access_token"])
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice Liddell"
    assert claims["preferred_username"] == "alice"
    assert claims["groups"] == ["admins", "devs"]


async def test_client_secret_post_works(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    assert (await exchange(provider, code, verifier, basic=False)).status == 200


async def test_wrong_verifier_is_refused_and_burns_the_code(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    r = await exchange(provider, code, pkce()[0])
    assert r.status == 400
    assert (await r.json())["error"] == "invalid_grant"
    r = await exchange(provider, code, verifier)
    assert (await r.json())["error"] == "invalid_grant"


async def test_a_code_works_once(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    assert (await exchange(provider, code, verifier)).status == 200
    again = await exchange(provider, code, verifier)
    assert again.status == 400
    assert (await again.json())["error"] == "invalid_grant"


async def test_a_code_expires(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    provider.clock.advance(61)
    r = await exchange(provider, code, verifier)
    assert (await r.json())["error"] == "invalid_grant"


async def test_token_redirect_uri_must_match_exactly(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    r = await token(provider, {**form, "redirect_uri": CALLBACK + "/"})
    assert (await r.json())["error"] == "invalid_grant"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_foreign_redirect_uri_is_never_followed(provider: Provider, method: str) -> None:
    evil = "https://evil.example/steal"
    params = authorize_params(pkce()[1], redirect_uri=evil)
    url = f"{provider.issuer}/authorize"
    if method == "GET":
        response = provider.http.get(url, params=params, allow_redirects=False)
    else:
        data = {**params, "login_email": "alice@example.com"}
        response = provider.http.post(url, data=data, allow_redirects=False)
    async with response as r:
        assert r.status == 400
        assert "Location" not in r.headers
        assert "evil.example/steal" in await r.text()  # named in the page, escaped


async def test_pkce_is_required(provider: Provider) -> None:
    params = authorize_params("x")
    del params["code_challenge"], params["code_challenge_method"]
    async with provider.http.get(f"{provider.issuer}/authorize", params=params, allow_redirects=False) as r:
        assert r.status == 302
    query = parse_qs(urlsplit(r.headers["Location"]).query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["st-1"]


async def test_plain_pkce_is_refused(provider: Provider) -> None:
    verifier = secrets.token_urlsafe(48)
    params = authorize_params(verifier, code_challenge_method="plain")
    async with provider.http.get(f"{provider.issuer}/authorize", params=params, allow_redirects=False) as r:
        assert parse_qs(urlsplit(r.headers["Location"]).query)["error"] == ["invalid_request"]


async def test_echoed_values_are_escaped(provider: Provider) -> None:
    params = authorize_params(pkce()[1], state='"><script>alert(1)</script>')
    async with provider.http.get(f"{provider.issuer}/authorize", params=params) as r:
        page = await r.text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


async def test_cross_site_form_posts_are_refused(provider: Provider) -> None:
    data = {**authorize_params(pkce()[1]), "login_email": "alice@example.com"}
    headers = {"Origin": "https://evil.example"}
    url = f"{provider.issuer}/authorize"
    async with provider.http.post(url, data=data, headers=headers, allow_redirects=False) as r:
        assert r.status == 403


async def test_refresh_rotates_the_refresh_token(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    first = await (await exchange(provider, code, verifier)).json()
    provider.clock.advance(100)
    r = await token(provider, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert r.status == 200
    second = await r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    claims = await verify(provider, second["id_token"], leeway=100)
    assert claims["sub"] == subject_for("alice@example.com")
    assert claims["auth_time"] == int(provider.clock()) - 100
    assert "nonce" not in claims
    reused = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    r = await token(provider, reused, basic=False)
    assert r.status == 400
    assert (await r.json())["error"] == "invalid_grant"
    rotated = {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
    assert (await token(provider, rotated, basic=False)).status == 200


async def test_without_rotation_one_refresh_token_serves_every_refresh(
    make_provider: Callable[..., Any],
) -> None:
    provider = await make_provider(rotate=False)
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    first = await (await exchange(provider, code, verifier)).json()
    again = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    for _ in range(2):
        r = await token(provider, again)
        assert r.status == 200
        assert "refresh_token" not in await r.json()


async def test_wrong_client_secret_is_refused(provider: Provider) -> None:
    data = {"grant_type": "refresh_token", "refresh_token": "x"}
    headers = {"Authorization": aiohttp.encode_basic_auth(CLIENT.client_id, "wrong")}
    async with provider.http.post(f"{provider.issuer}/token", data=data, headers=headers) as r:
        assert r.status == 401
        assert (await r.json())["error"] == "invalid_client"


async def test_es256(make_provider: Callable[..., Any]) -> None:
    p: Provider = await make_provider(signing_alg="ES256")
    verifier, challenge = pkce()
    body = await (await exchange(p, await sign_in(p, authorize_params(challenge)), verifier)).json()
    assert jwt.get_unverified_header(body["id_token"])["alg"] == "ES256"
    claims = await verify(p, body["id_token"])
    assert claims["nonce"] == "nonce-1"
    async with p.http.get(f"{p.issuer}/jwks") as r:
        (key,) = (await r.json())["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["use"] == "sig"
    assert "d" not in key


async def test_rotate_keys_publishes_old_and_new(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    old = await (await exchange(provider, code, verifier)).json()
    old_kid = jwt.get_unverified_header(old["id_token"])["kid"]
    new_kid = provider.idp.rotate_keys()
    async with provider.http.get(f"{provider.issuer}/jwks") as r:
        keys = (await r.json())["keys"]
    assert {k["kid"] for k in keys} == {old_kid, new_kid}
    assert all(k["alg"] == "RS256" and k["use"] == "sig" and "d" not in k for k in keys)
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge, nonce="nonce-2"))
    new = await (await exchange(provider, code, verifier)).json()
    assert jwt.get_unverified_header(new["id_token"])["kid"] == new_kid
    await verify(provider, new["id_token"])
    await verify(provider, old["id_token"])


async def test_fail_token_endpoint_switch(provider: Provider) -> None:
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    provider.idp.fail_token_endpoint = True
    assert (await exchange(provider, code, verifier)).status == 503
    provider.idp.fail_token_endpoint = False
    assert (await exchange(provider, code, verifier)).status == 200


async def test_fault_switches_down_garbage_padding_and_cache_control(
    make_provider: Callable[..., Any],
) -> None:
    p: Provider = await make_provider(prefix="/dev-idp")  # switches see paths relative to the issuer
    p.idp.down = True
    for path in ("/jwks", "/.well-known/openid-configuration", "/authorize"):
        async with p.http.get(f"{p.issuer}{path}") as r:
            assert r.status == 503 and r.headers["Retry-After"] == "30"
    p.idp.down = False
    p.idp.jwks_garbage = True
    async with p.http.get(f"{p.issuer}/jwks") as r:
        assert r.status == 200
        with pytest.raises(ValueError):
            await r.json(content_type=None)
    p.idp.jwks_garbage = False
    p.idp.padding["/jwks"] = 3 * 1024 * 1024
    p.idp.jwks_cache_control = "no-store"
    async with p.http.get(f"{p.issuer}/jwks") as r:
        assert r.headers["Cache-Control"] == "no-store"
        assert r.content_length is not None and r.content_length > 3 * 1024 * 1024
        jwks = await r.json()
    assert len(jwks["keys"]) == 1 and len(jwks["padding"]) == 3 * 1024 * 1024
    assert p.idp.requests["/jwks"] == 3 and p.idp.requests["/authorize"] == 1


async def test_slow_and_held_endpoint_switches(provider: Provider) -> None:
    form = {"grant_type": "authorization_code", "code": "unknown", "redirect_uri": CALLBACK}
    auth = {"Authorization": aiohttp.encode_basic_auth(CLIENT.client_id, CLIENT.client_secret)}
    provider.idp.delay["/token"] = 0.5
    with pytest.raises(TimeoutError):
        quick = aiohttp.ClientTimeout(total=0.05)
        await provider.http.post(f"{provider.issuer}/token", data=form, headers=auth, timeout=quick)
    del provider.idp.delay["/token"]
    async with provider.http.post(f"{provider.issuer}/token", data=form, headers=auth) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_grant"
    provider.idp.hold["/jwks"] = held = asyncio.Event()
    fetch = asyncio.create_task(provider.http.get(f"{provider.issuer}/jwks"))
    done, _ = await asyncio.wait({fetch}, timeout=0.2)
    assert not done and provider.idp.requests["/jwks"] == 1  # asked, and held
    held.set()
    async with await fetch as r:
        assert r.status == 200


async def test_userinfo_answers_for_a_live_access_token(provider: Provider) -> None:
    provider.idp.token_ttl = 30
    verifier, challenge = pkce()
    body = await (
        await exchange(provider, await sign_in(provider, authorize_params(challenge)), verifier)
    ).json()
    assert body["expires_in"] == 30
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    async with provider.http.get(f"{provider.issuer}/userinfo", headers=headers) as r:
        assert r.status == 200
        info = await r.json()
    assert info["sub"] == subject_for("alice@example.com")
    assert info["email"] == "alice@example.com"
    assert info["groups"] == ["admins", "devs"]
    provider.clock.advance(30)
    async with provider.http.get(f"{provider.issuer}/userinfo", headers=headers) as r:
        assert r.status == 401
        assert "invalid_token" in r.headers["WWW-Authenticate"]


async def test_end_session(provider: Provider) -> None:
    url = f"{provider.issuer}/end_session"
    params = {"client_id": CLIENT.client_id, "post_logout_redirect_uri": SIGNED_OUT, "state": "s"}
    async with provider.http.get(url, params=params, allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == f"{SIGNED_OUT}?state=s"
    params["post_logout_redirect_uri"] = "https://evil.example/"
    async with provider.http.get(url, params=params, allow_redirects=False) as r:
        assert r.status == 400
        assert "Location" not in r.headers
    async with provider.http.get(url) as r:
        assert r.status == 200
        assert "Signed out" in await r.text()


async def test_end_session_with_id_token_hint(provider: Provider) -> None:
    verifier, challenge = pkce()
    body = await (
        await exchange(provider, await sign_in(provider, authorize_params(challenge)), verifier)
    ).json()
    params = {"id_token_hint": body["id_token"], "post_logout_redirect_uri": SIGNED_OUT}
    url = f"{provider.issuer}/end_session"
    async with provider.http.get(url, params=params, allow_redirects=False) as r:
        assert r.status == 302
    params["id_token_hint"] = body["id_token"][:-4] + "AAAA"
    async with provider.http.get(url, params=params, allow_redirects=False) as r:
        assert r.status == 400


async def test_no_token_reaches_the_logs(provider: Provider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    verifier, challenge = pkce()
    code = await sign_in(provider, authorize_params(challenge))
    body = await (await exchange(provider, code, verifier)).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    again = await (await token(provider, refresh)).json()
    text = caplog.text
    for secret in (code, body["access_token"], body["refresh_token"], again["access_token"]):
        assert secret not in text
    assert CLIENT.client_secret not in text
    assert CLIENT.client_secret not in repr(provider.idp.config)


def test_standalone_rejects_a_malformed_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_standalone(["--http-address", "localhost"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
