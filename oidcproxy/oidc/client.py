"""The relying party: authorization URL, code exchange and ID token validation over aiohttp.

Discovery and keys are loaded lazily and once (under a lock), so the proxy starts even while the
provider is down and /ready tells when it has come up. Third-party errors become IdPUnavailable or
LoginFailed here, at the edge.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from authlib.common.urls import add_params_to_uri

from oidcproxy.errors import IdPUnavailable, LoginFailed
from oidcproxy.model import Clock, Tokens
from oidcproxy.oidc.jwks import KeySet
from oidcproxy.oidc.metadata import ProviderMetadata
from oidcproxy.oidc.tokens import ASYMMETRIC, TokenCheck, TokenInvalid, check_claims, unverified_header

__all__ = ["OIDCClient", "ProviderConfig"]

log = logging.getLogger("oidcproxy.oidc")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str = "openid email profile"
    extra_audiences: tuple[str, ...] = ()


class OIDCClient:
    def __init__(self, http: aiohttp.ClientSession, config: ProviderConfig, clock: Clock) -> None:
        self._http = http
        self.config = config
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self._metadata is not None

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    meta = await ProviderMetadata.discover(self._http, self.config.issuer)
                    self._keys = KeySet(self._http, meta.jwks_uri, self._clock)
                    self._metadata = meta
                    log.info("provider discovered: %s", meta.issuer)
        return self._metadata

    async def authorize_url(self, redirect_uri: str, state: str, nonce: str, code_challenge: str) -> str:
        meta = await self.metadata()
        params = [
            ("response_type", "code"),
            ("client_id", self.config.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", self.config.scope),
            ("state", state),
            ("nonce", nonce),
        ]
        if code_challenge:
            params += [("code_challenge", code_challenge), ("code_challenge_method", "S256")]
        return str(add_params_to_uri(meta.authorization_endpoint, params))

    async def exchange(
        self, code: str, *, redirect_uri: str, verifier: str, nonce: str
    ) -> tuple[Tokens, dict[str, Any]]:
        """Redeem the code; answers the tokens and the verified ID token claims."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier:
            form["code_verifier"] = verifier
        reply = await self._token_request(form)
        id_token = reply.get("id_token")
        if not isinstance(id_token, str):
            raise LoginFailed("token endpoint returned no id_token")
        claims = await self.verify_id_token(id_token, nonce=nonce)
        return self._tokens(reply, id_token), claims

    async def verify_id_token(self, token: str, nonce: str | None) -> dict[str, Any]:
        meta = await self.metadata()
        allowed = ASYMMETRIC.intersection(meta.id_token_signing_alg_values_supported)
        if not allowed:
            raise TokenInvalid("the provider advertises no asymmetric ID token algorithm")
        header = unverified_header(token, allowed)
        assert self._keys is not None  # noqa: S101 - set together with the metadata
        key = await self._keys.key(header.get("kid"))
        check = TokenCheck(
            issuer=meta.issuer,
            audiences=(self.config.client_id, *self.config.extra_audiences),
            algorithms=tuple(sorted(allowed)),
            client_id=self.config.client_id,
        )
        return check_claims(token, key, check, self._clock(), nonce)

    def _tokens(self, reply: dict[str, Any], id_token: str) -> Tokens:
        expires_in = reply.get("expires_in")
        expires_at = self._clock() + float(expires_in) if isinstance(expires_in, int | float) else 0.0
        return Tokens(
            id_token=id_token,
            access_token=str(reply.get("access_token") or ""),
            refresh_token=str(reply.get("refresh_token") or ""),
            expires_at=expires_at,
        )

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        meta = await self.metadata()
        headers = {"Accept": "application/json"}
        methods = meta.token_endpoint_auth_methods_supported
        if "client_secret_basic" not in methods and "client_secret_post" in methods:
            form = {**form, "client_id": self.config.client_id, "client_secret": self.config.client_secret}
        else:
            # RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding.
            headers["Authorization"] = aiohttp.encode_basic_auth(
                quote(self.config.client_id, safe=""), quote(self.config.client_secret, safe="")
            )
        try:
            async with self._http.post(meta.token_endpoint, data=form, headers=headers) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise IdPUnavailable(f"token endpoint: {type(exc).__name__}: {exc}") from exc
        if not isinstance(body, dict):
            raise IdPUnavailable(f"token endpoint answered {status} without a JSON object")
        if status >= 500:
            raise IdPUnavailable(f"token endpoint answered {status}")
        if status != 200:
            raise LoginFailed(f"token endpoint refused: {status} {body.get('error')!r}")
        return body
