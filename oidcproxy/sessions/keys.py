"""Key ring and AEAD sealing for cookies. Pure: no I/O, no aiohttp.

Each cookie secret yields an AES-256-GCM key through HKDF-SHA256. The first key seals; every key opens,
so a secret can be rotated by putting the new one first. Sealed format (v0, URL-safe base64, no padding):
`version(1) | key id(4) | nonce(12) | ciphertext+tag`, with the caller's associated data bound in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["KeyRing"]

_VERSION = b"\x00"
_HEADER = 1 + 4 + 12


def _hkdf(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


class KeyRing:
    """Seals with the first secret, opens with any; never shows its keys."""

    __slots__ = ("_keys", "_login_keys", "_sealer", "_tag_keys")

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("a key ring needs at least one secret")
        self._keys: dict[bytes, AESGCM] = {}
        for material in secrets:
            key = _hkdf(material, b"oidcproxy session v0")
            self._keys.setdefault(hashlib.sha256(key).digest()[:4], AESGCM(key))
        self._sealer = next(iter(self._keys.items()))
        self._login_keys = [_hkdf(material, b"oidcproxy login v0") for material in secrets]
        self._tag_keys = [_hkdf(material, b"oidcproxy index v0") for material in secrets]

    def __repr__(self) -> str:
        return f"KeyRing(<{len(self._keys)} keys>)"

    def seal(self, plaintext: bytes, associated: bytes) -> str:
        kid, aead = self._sealer
        nonce = os.urandom(12)
        blob = _VERSION + kid + nonce + aead.encrypt(nonce, plaintext, _VERSION + kid + associated)
        return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")

    def open(self, sealed: str, associated: bytes) -> bytes | None:
        """The plaintext, or None for anything tampered, truncated, foreign or of another version."""
        try:
            blob = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(blob) <= _HEADER + 16 or blob[:1] != _VERSION:
            return None
        aead = self._keys.get(blob[1:5])
        if aead is None:
            return None
        try:
            return aead.decrypt(blob[5:17], blob[17:], blob[:5] + associated)
        except InvalidTag:
            return None

    def sealed_by_first(self, sealed: str) -> bool:
        """Whether `sealed` names the sealing key (else the next save reseals it with that key)."""
        try:
            blob = base64.urlsafe_b64decode(sealed[:8] + "=" * (-len(sealed[:8]) % 4))
        except (binascii.Error, ValueError):
            return False
        return blob[1:5] == self._sealer[0]

    def tags(self, data: bytes) -> list[str]:
        """HMAC-SHA256 tags of `data` under every secret, the sealing one first: index keys that name
        nobody in plain text and that every secret of the ring can find again."""
        return [hmac.new(key, data, hashlib.sha256).hexdigest()[:32] for key in self._tag_keys]

    def login_secrets(self) -> list[bytes]:
        """Signing keys for the short-lived login cookie (itsdangerous), newest first."""
        return list(self._login_keys)
