"""Property: whatever token a client sends, the bearer verifier answers claims or a clean refusal.

Mutated tokens (headers, claims of any JSON type, raw characters, segments) go to the real
BearerVerifier, which discovers a real provider over HTTP (a small one here, with an RSA and an EC
key). The only outcomes allowed are verified claims (for an untouched token) or NotAuthenticated.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from oidcproxy.errors import NotAuthenticated
from oidcproxy.model import system_clock
from oidcproxy.oidc import BearerVerifier, OIDCClient, ProviderConfig, bearer_token
from tests.support.loop import Loop

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
CLAIMS = ("iss", "aud", "sub", "exp", "iat", "nbf", "azp", "email", "groups", "kid")
HEADER_KEYS = ("alg", "kid", "crit", "typ", "cty", "jku", "x5u", "jwk", "b64", "zip", "enc")
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def provider_app(issuer: list[str]) -> web.Application:
    def jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
        algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        return {**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid, "alg": alg, "use": "sig"}

    async def discovery(request: web.Request) -> web.Response:
        base = issuer[0]
        return web.json_response(
            {
                "issuer": base,
                "authorization_endpoint": base + "/authorize",
                "token_endpoint": base + "/token",
                "jwks_uri": base + "/jwks",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk(RSA_KEY, "rsa", "RS256"), jwk(EC_KEY, "ec", "ES256")]})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    return app


class Verifier:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.issuer: list[str] = [""]
        self.runner = web.AppRunner(provider_app(self.issuer), access_log=None)
        loop.run(self._start())

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.issuer[0] = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self.http = aiohttp.ClientSession()
        config = ProviderConfig(issuer=self.issuer[0], client_id="cli", client_secret="")
        client = OIDCClient(self.http, config, system_clock)
        self.bearer = BearerVerifier(self.http, client, (), system_clock)

    async def _stop(self) -> None:
        await self.http.close()
        await self.runner.cleanup()

    def claims(self, token: str) -> dict[str, Any] | NotAuthenticated:
        async def verify() -> dict[str, Any] | NotAuthenticated:
            try:
                return await self.bearer.claims(token)
            except NotAuthenticated as exc:
                return exc

        return self.loop.run(verify())


@pytest.fixture(scope="module")
def verifier(loop: Loop) -> Iterator[Verifier]:
    made = Verifier(loop)
    yield made
    loop.run(made._stop())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def good_claims(issuer: str) -> dict[str, Any]:
    now = int(system_clock())
    return {"iss": issuer, "aud": "cli", "sub": "alice", "iat": now, "exp": now + 600, "email": "a@b.c"}


def sign(payload: bytes, header: dict[str, Any]) -> str:
    key = EC_KEY if header.get("alg") == "ES256" else RSA_KEY
    alg = "ES256" if key is EC_KEY else "RS256"
    head = b64(json.dumps({"alg": alg, "kid": "rsa" if alg == "RS256" else "ec", **header}).encode())
    body = b64(payload)
    # By hand, not jwt.encode: that refuses the odd headers (a numeric kid, a bad crit) sent here.
    signature = jwt.get_algorithm_by_name(alg).sign(f"{head}.{body}".encode(), key)
    return f"{head}.{body}.{b64(signature)}"


@st.composite
def hostile_tokens(draw: st.DrawFn, issuer: str) -> str:
    claims: dict[str, Any] = good_claims(issuer)
    for name in draw(st.lists(st.sampled_from(CLAIMS), max_size=3, unique=True)):
        if draw(st.booleans()):
            claims[name] = draw(json_values)
        else:
            claims.pop(name, None)
    header: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(HEADER_KEYS), json_values, max_size=2)
        | st.just({})
        | st.just({"alg": "ES256"})
    )
    payload = json.dumps(claims).encode() if draw(st.integers(0, 9)) else draw(st.binary(max_size=40))
    token = sign(payload, header)
    return draw(mutated(token))


@st.composite
def mutated(draw: st.DrawFn, token: str) -> str:
    how = draw(st.sampled_from(["none", "chars", "segment", "dots", "random"]))
    if how == "chars":
        chars = list(token)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(chars) - 1))
            chars[at] = draw(st.sampled_from(B64URL + ".=+/% \x00é"))
        return "".join(chars)
    if how == "segment":
        parts = token.split(".")
        at = draw(st.integers(0, 2))
        raw = draw(st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()))
        parts[at] = b64(raw) if draw(st.booleans()) else raw.decode("latin-1")
        return ".".join(parts)
    if how == "dots":
        return token + draw(st.sampled_from([".", "..x", ".e30"]))
    if how == "random":
        return draw(st.text(alphabet=B64URL + ".", max_size=200))
    return token


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_the_untouched_token_is_verified(verifier: Verifier, alg: str) -> None:
    token = sign(json.dumps(good_claims(verifier.issuer[0])).encode(), {"alg": alg})
    assert verifier.claims(token)["sub"] == "alice"  # type: ignore[index]


@given(data=st.data())
def test_mutated_tokens_get_claims_or_a_clean_refusal(verifier: Verifier, data: st.DataObject) -> None:
    token = data.draw(hostile_tokens(verifier.issuer[0]))
    bearer_token("Bearer " + token)  # never raises either
    outcome = verifier.claims(token)
    if isinstance(outcome, NotAuthenticated):
        assert outcome.status == 401
    else:
        assert outcome["iss"] == verifier.issuer[0] and isinstance(outcome["sub"], str)
