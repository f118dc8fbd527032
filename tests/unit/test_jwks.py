"""What counts as a usable key set: pure checks of `parse_keys`, no provider needed."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from oidcproxy.oidc.jwks import parse_keys


def rsa_jwk(kid: str, **extra: Any) -> dict[str, Any]:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public)), "kid": kid, **extra}


def test_signing_keys_by_kid_skipping_encryption_and_broken_ones() -> None:
    doc = {"keys": [rsa_jwk("a"), rsa_jwk("enc", use="enc"), {"kty": "RSA", "kid": "broken"}, "junk"]}
    assert list(parse_keys(doc)) == ["a"]


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({}, "no 'keys' list"),
        ({"keys": "a"}, "no 'keys' list"),
        ({"keys": []}, "no usable signing key"),
        ({"keys": [{"kty": "RSA", "kid": "broken"}]}, "no usable signing key"),
    ],
)
def test_a_key_set_without_a_usable_key_is_a_failed_fetch(doc: dict[str, Any], why: str) -> None:
    # The caller keeps the keys it knows instead of replacing them with nothing.
    with pytest.raises(ValueError, match=why):
        parse_keys(doc)
