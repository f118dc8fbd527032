"""--skip-jwt-bearer-tokens: CLIs send `Authorization: Bearer <JWT>` instead of a cookie.

Tokens are real: issued by the npm oidc-provider to a CLI client, or crafted forgeries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from oidcproxy.model import FakeClock, system_clock
from tests.support.nodeidp import DEFAULT_CLIENT
from tests.support.oidcflow import KUBECTL, code_flow_id_token, provider_key

JSON = {"Accept": "application/json"}


async def call(proxy: Any, token: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as cli:
        headers = {**JSON, "Authorization": f"Bearer {token}"}
        async with cli.get(proxy.make_url("/api/pods"), headers=headers) as resp:
            return resp.status, await resp.json()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_bearer_jwt_accepted_and_refused_once_expired(node: Any, make_proxy: Any) -> None:
    idp = node(clients=[DEFAULT_CLIENT, KUBECTL])
    clock = FakeClock(system_clock())
    proxy = await make_proxy(idp, clock, skip_jwt_bearer_tokens=True, oidc_extra_audience=["kubectl"])
    token = await code_flow_id_token(idp, KUBECTL, "alice")
    status, seen = await call(proxy, token)
    assert status == 200
    assert seen["headers"]["X-Forwarded-Email"] == "alice@example.com"
    assert seen["headers"]["X-Forwarded-Groups"] == "admins,dev"
    clock.advance(3600 + 61)  # the provider's ID tokens live an hour; 60 s leeway
    status, body = await call(proxy, token)
    assert status == 401 and body["error"] == "NotAuthenticated"


async def test_bearer_tokens_off_by_default(node: Any, make_proxy: Any) -> None:
    idp = node(clients=[DEFAULT_CLIENT, KUBECTL])
    proxy = await make_proxy(idp, oidc_extra_audience=["kubectl"])
    status, _ = await call(proxy, await code_flow_id_token(idp, KUBECTL, "alice"))
    assert status == 401


async def test_bearer_passes_the_same_authorization_rules(node: Any, make_proxy: Any) -> None:
    idp = node(clients=[DEFAULT_CLIENT, KUBECTL])
    proxy = await make_proxy(
        idp, skip_jwt_bearer_tokens=True, oidc_extra_audience=["kubectl"], allowed_group=["ops"]
    )
    status, _ = await call(proxy, await code_flow_id_token(idp, KUBECTL, "alice"))
    assert status == 403


async def test_other_issuer_refused_unless_listed_in_extra_jwt_issuers(node: Any, make_proxy: Any) -> None:
    ours = node()
    other = node(clients=[KUBECTL])
    token = await code_flow_id_token(other, KUBECTL, "alice")
    strict = await make_proxy(ours, skip_jwt_bearer_tokens=True)
    status, _ = await call(strict, token)
    assert status == 401
    listed = await make_proxy(
        ours, skip_jwt_bearer_tokens=True, extra_jwt_issuers=[f"{other.issuer}=kubectl"]
    )
    status, seen = await call(listed, token)
    assert status == 200 and seen["headers"]["X-Forwarded-Email"] == "alice@example.com"
    wrong_aud = await make_proxy(
        ours, skip_jwt_bearer_tokens=True, extra_jwt_issuers=[f"{other.issuer}=else"]
    )
    assert (await call(wrong_aud, token))[0] == 401


async def test_unsigned_and_hmac_with_public_key_forgeries_refused(node: Any, make_proxy: Any) -> None:
    idp = node(clients=[DEFAULT_CLIENT, KUBECTL])
    proxy = await make_proxy(idp, skip_jwt_bearer_tokens=True, oidc_extra_audience=["kubectl"])
    genuine = await code_flow_id_token(idp, KUBECTL, "alice")
    claims = jwt.decode(genuine, options={"verify_signature": False})
    claims["email"] = "root@example.com"
    body = b64(json.dumps(claims).encode())
    _, kid = provider_key(idp)
    unsigned = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode()) + "." + body + "."
    status, _ = await call(proxy, unsigned)
    assert status == 401
    # Key confusion: HS256 keyed with the provider's published public key (PEM, as a naive verifier reads it).
    jwks = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(provider_key(idp)[0].public_key()))
    pem = jwt.PyJWK(jwks, "RS256").key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + body
    sig = b64(hmac.new(pem, head.encode(), hashlib.sha256).digest())
    status, _ = await call(proxy, head + "." + sig)
    assert status == 401
    assert (await call(proxy, genuine))[0] == 200


async def test_extra_jwt_issuer_equal_to_ours_adds_an_audience(node: Any, make_proxy: Any) -> None:
    """kubectl with its own client at the same realm: `--extra-jwt-issuers <our issuer>=kubectl`."""
    other = {**KUBECTL, "client_id": "other", "client_secret": "other-secret"}
    idp = node(clients=[DEFAULT_CLIENT, KUBECTL, other])
    proxy = await make_proxy(idp, skip_jwt_bearer_tokens=True, extra_jwt_issuers=[f"{idp.issuer}=kubectl"])
    status, seen = await call(proxy, await code_flow_id_token(idp, KUBECTL, "alice"))
    assert status == 200 and seen["headers"]["X-Forwarded-Email"] == "alice@example.com"
    status, body = await call(proxy, await code_flow_id_token(idp, other, "alice"))
    assert status == 401 and body["error"] == "NotAuthenticated"


def _segment(data: Any) -> str:
    return b64(data if isinstance(data, bytes) else json.dumps(data).encode())


def hostile_tokens(idp: Any, genuine: str) -> dict[str, str]:
    """Malformed or hostile JWTs; the ones that need it carry a valid signature by the provider's key."""
    claims = jwt.decode(genuine, options={"verify_signature": False})
    head, body, sig = genuine.split(".")
    key, kid = provider_key(idp)

    def signed(payload: bytes, **header: Any) -> str:
        return jwt.api_jws.encode(payload, key, algorithm="RS256", headers={"kid": kid, **header})

    def wrong(**changes: Any) -> str:
        return signed(json.dumps({**claims, **changes}).encode())

    return {
        "unknown crit": signed(json.dumps(claims).encode(), crit=["urn:x:critical"], **{"urn:x:critical": 1}),
        "crit not a list": f"{_segment({'alg': 'RS256', 'kid': kid, 'crit': 'b64'})}.{body}.{sig}",
        "kid a number": f"{_segment({'alg': 'RS256', 'kid': 7})}.{body}.{sig}",
        "alg a list": f"{_segment({'alg': ['RS256'], 'kid': kid})}.{body}.{sig}",
        "header a list": f"{_segment(['RS256'])}.{body}.{sig}",
        "header not JSON": f"{_segment(b'{alg: RS256')}.{body}.{sig}",
        "header bad base64": f"e!!.{body}.{sig}",
        "payload bad base64": f"{head}.%%%.{sig}",
        "payload not JSON": signed(b"not json"),
        "payload a list": signed(b"[1, 2]"),
        "oversized header": f"{_segment({'alg': 'RS256', 'kid': kid, 'x': 'a' * 40_000})}.{body}.{sig}",
        "iss a list": wrong(iss=[claims["iss"]]),
        "iss a number": wrong(iss=1),
        "aud a number": wrong(aud=5),
        "aud a dict": wrong(aud={"a": claims["aud"]}),
        "exp a string": wrong(exp="tomorrow"),
        "iat a list": wrong(iat=[1]),
        "nbf a dict": wrong(nbf={}),
        "sub a list": wrong(sub=["alice"]),
        "sub empty": wrong(sub=""),
        "no signature": f"{head}.{body}.",
        "wrong alg": f"{_segment({'alg': 'ES256', 'kid': kid})}.{body}.{sig}",
        # Signed by the attacker's key, which `jku` claims to publish: keys come only from our JWKS.
        "jku to an attacker's key": jwt.api_jws.encode(
            json.dumps(claims).encode(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
            headers={"kid": kid, "jku": "http://127.0.0.1:9/jwks"},
        ),
    }


async def test_malformed_and_hostile_tokens_get_the_usual_401(node: Any, make_proxy: Any) -> None:
    idp = node(clients=[DEFAULT_CLIENT, KUBECTL])
    proxy = await make_proxy(idp, skip_jwt_bearer_tokens=True, oidc_extra_audience=["kubectl"])
    genuine = await code_flow_id_token(idp, KUBECTL, "alice")
    answers = {name: await call(proxy, token) for name, token in hostile_tokens(idp, genuine).items()}
    wrong = {name: (status, body) for name, (status, body) in answers.items() if status != 401}
    assert not wrong
    assert all(body["error"] == "NotAuthenticated" for _, body in answers.values())
    assert (await call(proxy, genuine))[0] == 200
