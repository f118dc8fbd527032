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

from oidcproxy.model import FakeClock, system_clock
from tests.integration.test_tokens import KUBECTL, code_flow_id_token, make_proxy, node, provider_key
from tests.support.nodeidp import DEFAULT_CLIENT

__all__ = ["make_proxy", "node"]  # fixtures shared with test_tokens.py

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
