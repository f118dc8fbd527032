"""The development provider's side of logout: logout tokens, their delivery, and token revocation.

- `logout_token`: OpenID Connect Back-Channel Logout 1.0, section 2.4 (typ `logout+jwt`, `events`,
  `jti`, no nonce), signed with the provider's current key.
- `deliver`: section 2.5, a form POST of the token to each client's `backchannel_logout_uri`.
- `revoke`: RFC 7009 section 2, for a client that authenticates (Basic or form secret).

Written from those specifications, like the rest of `idp`. Imports idp.config, idp.keys, idp.store.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import aiohttp
from joserfc import jwt

from oidcproxy.idp.config import IdPClient, IdPConfig
from oidcproxy.idp.keys import KeyRing
from oidcproxy.idp.store import Store

__all__ = ["LOGOUT_EVENT", "authenticate_client", "deliver", "logout_token", "revoke"]

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_LOGOUT_TOKEN_TTL_S = 120


def logout_token(
    keys: KeyRing, issuer: str, client_id: str, now: float, *, sub: str = "", sid: str = "", **extra: Any
) -> str:
    """A logout token for `client_id` naming `sub` and/or `sid`; `extra` claims override (tests)."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client_id,
        "iat": int(now),
        "exp": int(now) + _LOGOUT_TOKEN_TTL_S,
        "jti": secrets.token_urlsafe(16),
        "events": {LOGOUT_EVENT: {}},
    }
    if sub:
        claims["sub"] = sub
    if sid:
        claims["sid"] = sid
    claims.update(extra)
    key = keys.current
    header = {"alg": key.alg, "kid": key.kid, "typ": "logout+jwt"}
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, key.key)


async def deliver(client: IdPClient, token: str) -> int:
    """POST the token to the client's back-channel logout URI; its status (0 when unreachable)."""
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(client.backchannel_logout_uri, data={"logout_token": token}) as resp,
        ):
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


def authenticate_client(config: IdPConfig, authorization: str, form: Mapping[str, str]) -> IdPClient | None:
    """The client named by HTTP Basic (RFC 6749 2.3.1) or by client_id/client_secret in the form."""
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:
            return None
        user, _, password = decoded.partition(":")
        client_id, secret = unquote(user), unquote(password)
    client = config.client(client_id)
    if client is None or not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        return None
    return client


def revoke(store: Store, client: IdPClient, token: str) -> None:
    """RFC 7009 2.1: the client's refresh or access token stops working; unknown tokens are ignored."""
    refresh = store.refresh.get(token)
    if refresh is not None and refresh.client_id == client.client_id:
        del store.refresh[token]
    access = store.access.get(token)
    if access is not None and access.client_id == client.client_id:
        del store.access[token]
