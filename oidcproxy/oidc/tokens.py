"""Token checks with pyjwt, pure: the caller supplies the key and `now`.

OIDC Core 3.1.3.7: signature with an advertised asymmetric algorithm, `iss` equal, `aud` containing
the client id, `azp` when present, `exp`/`iat`/`nbf` against the injected clock with a small leeway,
and the `nonce` we sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jwt

from oidcproxy.errors import TokenInvalid

__all__ = ["ASYMMETRIC", "TokenCheck", "check_claims", "is_jwt", "unverified_header"]

ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_REQUIRED = ["exp", "iat", "iss", "aud"]
_NO_SUB = (
    "The identity provider sent a token without a subject (sub) claim, so nobody can be signed in "
    "with it. Ask the provider's administrator to include sub."
)


@dataclass(frozen=True, slots=True)
class TokenCheck:
    issuer: str | tuple[str, ...]  # several: any of them (Entra ID's v1 and v2 issuer of one tenant)
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    client_id: str = ""
    leeway_s: float = 60.0
    require_iat: bool = True


def is_jwt(token: str) -> bool:
    """Three base64url parts whose header names an algorithm: a JWS (RFC 7515 7.1), not an opaque token."""
    if token.count(".") != 2:
        return False
    try:
        return "alg" in jwt.get_unverified_header(token)
    except jwt.PyJWTError:  # not only DecodeError: a bad `kid` or `crit` is an InvalidTokenError
        return False


def unverified_header(token: str, allowed: Collection[str]) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"token is not a JWT we accept: {type(exc).__name__}: {exc}") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        raise TokenInvalid(f"token algorithm {header.get('alg')!r} is not one of {sorted(allowed)}")
    return header


def check_claims(
    token: str, key: jwt.PyJWK, check: TokenCheck, now: float, nonce: str | None = None
) -> dict[str, Any]:
    """Verified claims of `token`, or TokenInvalid naming the first check that failed."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(check.algorithms),
            audience=list(check.audiences),
            issuer=check.issuer if isinstance(check.issuer, str) else list(check.issuer),
            options={
                "require": _REQUIRED if check.require_iat else [r for r in _REQUIRED if r != "iat"],
                "verify_exp": False,  # checked below against the injected clock
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"token rejected: {type(exc).__name__}: {exc}") from None
    leeway = check.leeway_s
    if not isinstance(claims["exp"], int | float) or now > claims["exp"] + leeway:
        raise TokenInvalid("token expired")
    iat = claims.get("iat", 0)
    if not isinstance(iat, int | float) or iat > now + leeway:
        raise TokenInvalid("token issued in the future")
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int | float) or nbf > now + leeway):
        raise TokenInvalid("token not valid yet (nbf)")
    azp = claims.get("azp")
    if check.client_id and azp is not None and azp != check.client_id:
        raise TokenInvalid(f"token azp {azp!r} is not this client")
    if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise TokenInvalid("token nonce does not match the login attempt")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        # OIDC Core 2: sub is REQUIRED; without it there is no stable identity to sign in.
        raise TokenInvalid("token has no sub claim", public=_NO_SUB)
    return claims
