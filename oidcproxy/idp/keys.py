"""The provider's signing keys: generated in memory, rotated on demand, published as a JWKS.

No persistence: a restart makes a new key, so every earlier token stops verifying. Imports nothing
from oidcproxy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from joserfc.jwk import ECKey, KeySet, RSAKey

__all__ = ["KeyRing", "SigningKey"]

_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    key: RSAKey | ECKey = field(repr=False)

    def public_jwk(self) -> dict[str, object]:
        """RFC 7517 4: the public members plus kid, alg and use=sig."""
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": self.alg, "use": "sig"}


class KeyRing:
    """Signs with the newest key; publishes every key it ever made (rotation keeps old tokens
    verifiable until they expire, as a real provider does during a key roll-over)."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        self._keys: list[SigningKey] = []
        self.rotate()

    @property
    def current(self) -> SigningKey:
        return self._keys[-1]

    def rotate(self) -> SigningKey:
        key: RSAKey | ECKey
        if self.alg == "ES256":
            key = ECKey.generate_key("P-256", private=True)
        else:
            key = RSAKey.generate_key(_RSA_BITS, private=True)
        # RFC 7638 thumbprint: a kid that changes with the key and needs no counter.
        key.ensure_kid()
        signing = SigningKey(kid=str(key.kid), alg=self.alg, key=key)
        self._keys.append(signing)
        return signing

    def jwks(self) -> dict[str, object]:
        return {"keys": [k.public_jwk() for k in reversed(self._keys)]}

    def verification_keys(self) -> KeySet:
        return KeySet([k.key for k in self._keys])
