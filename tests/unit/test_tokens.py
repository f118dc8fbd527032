"""Token checks with real keys and crafted forgeries; the pure refresh decision; JWKS cache lifetime."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from oidcproxy.errors import TokenInvalid
from oidcproxy.model import Identity, Session, Tokens
from oidcproxy.oidc.jwks import cache_ttl
from oidcproxy.oidc.refresh import RefreshPolicy, refresh_state
from oidcproxy.oidc.tokens import (
    ASYMMETRIC,
    TokenCheck,
    check_claims,
    is_jwt,
    unverified_header,
)

NOW = 1_800_000_000.0
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
PUBLIC = jwt.PyJWK(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key())), "RS256")
CHECK = TokenCheck(issuer="https://idp", audiences=("app", "api"), algorithms=("RS256",), client_id="app")


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": "https://idp", "aud": "app", "sub": "u1", "iat": int(NOW), "exp": int(NOW) + 300}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(**changes: Any) -> str:
    return jwt.encode(claims(**changes), KEY, algorithm="RS256", headers={"kid": "k1"})


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token_and_extra_audience() -> None:
    assert check_claims(signed(), PUBLIC, CHECK, NOW)["sub"] == "u1"
    assert check_claims(signed(aud=["other", "api"], azp="app"), PUBLIC, CHECK, NOW)["sub"] == "u1"


def test_foreign_audience_expired_and_wrong_issuer_are_refused() -> None:
    with pytest.raises(TokenInvalid, match="Audience"):
        check_claims(signed(aud="someone-else"), PUBLIC, CHECK, NOW)
    with pytest.raises(TokenInvalid, match="expired"):
        check_claims(signed(exp=int(NOW) - 61), PUBLIC, CHECK, NOW)
    with pytest.raises(TokenInvalid, match="Issuer"):
        check_claims(signed(iss="https://evil"), PUBLIC, CHECK, NOW)


def test_missing_sub_has_its_own_public_text() -> None:
    with pytest.raises(TokenInvalid) as caught:
        check_claims(signed(sub=None), PUBLIC, CHECK, NOW)
    assert caught.value.detail == "token has no sub claim"
    assert "without a subject (sub) claim" in caught.value.public


def test_alg_none_is_refused_before_any_key_is_looked_up() -> None:
    forged = b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims()) + "."
    with pytest.raises(TokenInvalid, match="'none'"):
        unverified_header(forged, ASYMMETRIC)


def test_hmac_signed_with_the_public_key_is_refused() -> None:
    # The classic key-confusion forgery: HS256 with the provider's public key as the shared secret.
    import hashlib
    import hmac

    head = b64({"alg": "HS256", "typ": "JWT", "kid": "k1"}) + "." + b64(claims())
    sig = hmac.new(PUBLIC_PEM, head.encode(), hashlib.sha256).digest()
    forged = head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    with pytest.raises(TokenInvalid, match="HS256"):
        unverified_header(forged, ASYMMETRIC)
    with pytest.raises(TokenInvalid):
        check_claims(forged, PUBLIC, CHECK, NOW)


def test_is_jwt_tells_opaque_tokens_apart() -> None:
    assert is_jwt(signed())
    assert not is_jwt("ya29.a0AfH6SMB-opaque")
    assert not is_jwt("abc.def.ghi")


def session(*, refresh_token: str = "rt", issued: float = NOW, ttl: float = 300.0) -> Session:  # noqa: S107
    tokens = Tokens("id", "at", refresh_token, issued + ttl if ttl else 0.0)
    return Session(Identity("u1"), tokens, created_at=issued, expires_at=issued + 86400)


def test_refresh_is_driven_by_token_expiry_shortly_before_it() -> None:
    policy = RefreshPolicy()
    assert refresh_state(session(), policy, NOW + 200) == "fresh"
    assert refresh_state(session(), policy, NOW + 241) == "refresh"  # within the last fifth
    assert refresh_state(session(ttl=5), policy, NOW + 4.1) == "refresh"
    assert refresh_state(session(ttl=0), policy, NOW + 10_000) == "fresh"  # no expiry known


def test_cookie_refresh_drives_refresh_by_session_age() -> None:
    policy = RefreshPolicy(cookie_refresh_s=60)
    long_lived = session(ttl=3600)
    assert refresh_state(long_lived, policy, NOW + 59) == "fresh"
    assert refresh_state(long_lived, policy, NOW + 60) == "refresh"


def test_expired_tokens_without_refresh_token_end_the_session() -> None:
    policy = RefreshPolicy(cookie_refresh_s=60)
    assert refresh_state(session(refresh_token=""), policy, NOW + 100) == "fresh"
    assert refresh_state(session(refresh_token=""), policy, NOW + 300) == "dead"


@pytest.mark.parametrize(
    ("header", "ttl"),
    [
        ("", 3600.0),
        ("max-age=600", 600.0),
        ("public, max-age=5", 60.0),
        ("no-store", 0.0),  # revalidated in the background, at most every --oidc-jwks-min-refetch
        ("max-age=600, no-cache", 0.0),
        ("max-age=9999999", 86400.0),
    ],
)
def test_jwks_cache_lifetime_follows_cache_control(header: str, ttl: float) -> None:
    assert cache_ttl(header, 3600.0) == ttl
