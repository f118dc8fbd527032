"""The relying party: authorization URL, code exchange, refresh, userinfo and token validation.

Discovery (or the manual endpoints of --skip-oidc-discovery) and keys are loaded lazily and once
(under a lock), so the proxy starts even while the provider is down and /ready tells when it has come
up. Third-party errors become IdPUnavailable, LoginFailed or RefreshRefused here, at the edge.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
from authlib.common.urls import add_params_to_uri

from oidcproxy.errors import IdPUnavailable, LoginFailed, RefreshRefused, TokenInvalid, TokenRefused
from oidcproxy.model import Clock, Tokens
from oidcproxy.oidc.claims import missing_profile_claims
from oidcproxy.oidc.jwks import KeySet
from oidcproxy.oidc.metadata import MAX_RESPONSE_BYTES, ProviderMetadata, provider_fault, read_json
from oidcproxy.oidc.tokens import (
    ASYMMETRIC,
    TokenCheck,
    check_claims,
    is_jwt,
    unverified_header,
)

__all__ = ["Endpoints", "OIDCClient", "ProviderConfig", "ssl_context"]

log = logging.getLogger("oidcproxy.oidc")

# RFC 6749 5.2: errors after which retrying the same refresh token cannot succeed.
_FATAL = frozenset({"invalid_grant", "invalid_client", "unauthorized_client", "unsupported_grant_type"})


def ssl_context(ca_files: Iterable[str]) -> ssl.SSLContext:
    """The system trust store, plus each PEM CA file given (read once, at start-up)."""
    context = ssl.create_default_context()
    for path in ca_files:
        context.load_verify_locations(cafile=path)
    return context


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The manual endpoints of --skip-oidc-discovery (Headplane's style of configuration)."""

    authorization: str
    token: str
    jwks: str
    userinfo: str = ""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str = "openid email profile"
    extra_audiences: tuple[str, ...] = ()
    validator_issuer: str = ""
    validator_client_id: str = ""
    use_access_token: bool = False
    endpoints: Endpoints | None = None
    auth_extra_params: tuple[tuple[str, str], ...] = ()
    jwks_min_refetch_s: float = 30.0
    jwks_stale_if_error_s: float = 86400.0
    max_response_bytes: int = MAX_RESPONSE_BYTES
    profile_claims: tuple[str, str] = ("email", "groups")
    redirect_url: str = ""  # our callback registered there; empty: built from the request
    # Further issuers of the same provider whose tokens are accepted (Entra ID: the tenant's v1 issuer).
    also_issuers: tuple[str, ...] = ()


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

    @property
    def loaded(self) -> ProviderMetadata | None:
        """The provider's metadata once loaded, else None; never waits."""
        return self._metadata

    @property
    def keys(self) -> KeySet | None:
        """The provider's key set, once loaded (tests count its fetches)."""
        return self._keys

    async def close(self) -> None:
        """Stop a key set fetch still in flight (before the HTTP session closes)."""
        if self._keys is not None:
            await self._keys.close()

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    meta = await self._load_metadata()
                    self._keys = KeySet(
                        self._http,
                        meta.jwks_uri,
                        self._clock,
                        min_refetch_s=self.config.jwks_min_refetch_s,
                        stale_if_error_s=self.config.jwks_stale_if_error_s,
                        max_bytes=self.config.max_response_bytes,
                    )
                    self._metadata = meta
                    log.info("provider configured: %s", meta.issuer)
        return self._metadata

    async def _load_metadata(self) -> ProviderMetadata:
        manual = self.config.endpoints
        if manual is None:
            return await ProviderMetadata.discover(
                self._http, self.config.issuer, self.config.max_response_bytes
            )
        return ProviderMetadata(
            issuer=self.config.issuer,
            authorization_endpoint=manual.authorization,
            token_endpoint=manual.token,
            jwks_uri=manual.jwks,
            userinfo_endpoint=manual.userinfo,
            id_token_signing_alg_values_supported=tuple(sorted(ASYMMETRIC)),
            token_endpoint_auth_methods_supported=("client_secret_basic", "client_secret_post"),
        )

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
        reserved = {k for k, _ in params}  # extra parameters never override the protocol's own
        params += [(k, v) for k, v in self.config.auth_extra_params if k not in reserved]
        return str(add_params_to_uri(meta.authorization_endpoint, params))

    async def exchange(
        self, code: str, *, redirect_uri: str, verifier: str, nonce: str
    ) -> tuple[Tokens, dict[str, Any]]:
        """Redeem the code; answers the tokens and the verified ID token claims (plus userinfo's)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier:
            form["code_verifier"] = verifier
        reply = await self._token_request(form)
        id_token = reply.get("id_token")
        if not isinstance(id_token, str):
            raise LoginFailed("token endpoint returned no id_token")
        claims = await self.verify_id_token(id_token, nonce=nonce)
        tokens = self._tokens(reply, id_token, "")
        await self.verify_passed_token(tokens)
        if missing_profile_claims(claims, *self.config.profile_claims):
            claims = await self._with_userinfo(claims, tokens.access_token)
        return tokens, claims

    async def refresh(self, tokens: Tokens) -> tuple[Tokens, dict[str, Any] | None]:
        """Redeem the refresh token (RFC 6749 6); the new tokens, and the new ID token's claims if any.

        RefreshRefused when the provider will never accept it; IdPUnavailable for a transient fault.
        """
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        try:
            reply = await self._token_request(form)
        except TokenRefused as exc:
            if exc.error in _FATAL:
                raise RefreshRefused(exc.detail, exc.error) from None
            raise IdPUnavailable(f"refresh refused for now: {exc.detail}") from None
        id_token = reply.get("id_token")
        claims: dict[str, Any] | None = None
        if isinstance(id_token, str):
            # OIDC Core 12.2: same iss, sub and aud as the first ID token; no nonce to compare.
            claims = await self.verify_id_token(id_token, nonce=None)
        new = self._tokens(
            reply, id_token if isinstance(id_token, str) else tokens.id_token, tokens.refresh_token
        )
        await self.verify_passed_token(new)
        if claims is not None and missing_profile_claims(claims, *self.config.profile_claims):
            # As at login: what userinfo supplied then (Keycloak's realm roles, say) must not vanish.
            claims = await self._with_userinfo(claims, new.access_token)
        return new, claims

    async def verify_id_token(self, token: str, nonce: str | None) -> dict[str, Any]:
        meta = await self.metadata()
        check = TokenCheck(
            issuer=self.issuers(meta),
            audiences=(self.config.client_id, *self.config.extra_audiences),
            algorithms=self.algorithms(meta),
            client_id=self.config.client_id,
        )
        return await self.verify(token, check, nonce)

    async def verify_passed_token(self, tokens: Tokens) -> None:
        """--oidc-use-access-token: a JWT access token must pass the validator's issuer and audience.

        An opaque one (Google, some Okta setups) passes as it is: the ID token was verified already.
        """
        if not self.config.use_access_token or not is_jwt(tokens.access_token):
            return
        meta = await self.metadata()
        check = TokenCheck(
            issuer=(self.config.validator_issuer,) if self.config.validator_issuer else self.issuers(meta),
            audiences=(
                self.config.validator_client_id or self.config.client_id,
                *self.config.extra_audiences,
            ),
            algorithms=self.algorithms(meta),
        )
        await self.verify(tokens.access_token, check, None)

    async def verify(self, token: str, check: TokenCheck, nonce: str | None = None) -> dict[str, Any]:
        """Verified claims of a token signed with one of the provider's keys."""
        key = await self.signing_key(token, check.algorithms)
        return check_claims(token, key, check, self._clock(), nonce)

    async def signing_key(self, token: str, algorithms: tuple[str, ...]) -> jwt.PyJWK:
        """The provider's key named by the token's header (TokenInvalid: bad header or unknown kid)."""
        header = unverified_header(token, algorithms)
        await self.metadata()
        assert self._keys is not None  # noqa: S101 - set together with the metadata
        return await self._keys.key(header.get("kid"))

    async def revoke(self, token: str, hint: str = "refresh_token") -> bool:
        """RFC 7009 2.1: ask the provider to revoke a token; False when it advertises no endpoint.

        IdPUnavailable when the provider could not be reached or did not answer 200.
        """
        meta = await self.metadata()
        if not meta.revocation_endpoint or not token:
            return False
        form, headers = self._authenticated({"token": token, "token_type_hint": hint}, meta)
        try:
            async with self._http.post(meta.revocation_endpoint, data=form, headers=headers) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise provider_fault("revocation endpoint", exc) from exc
        if status != 200:  # RFC 7009 2.2: 200 also for a token already invalid
            raise IdPUnavailable(f"revocation endpoint answered {status}")
        return True

    def issuers(self, meta: ProviderMetadata) -> tuple[str, ...]:
        """The issuers whose tokens this provider's checks accept: its own, and `also_issuers`."""
        return (meta.issuer, *self.config.also_issuers)

    @staticmethod
    def algorithms(meta: ProviderMetadata) -> tuple[str, ...]:
        allowed = ASYMMETRIC.intersection(meta.id_token_signing_alg_values_supported)
        if not allowed:
            raise TokenInvalid("the provider advertises no asymmetric ID token algorithm")
        return tuple(sorted(allowed))

    async def _with_userinfo(self, claims: dict[str, Any], access_token: str) -> dict[str, Any]:
        """OIDC Core 5.3: fill in what the ID token lacks; userinfo's sub must be the same person."""
        meta = await self.metadata()
        if not meta.userinfo_endpoint or not access_token:
            return claims
        try:
            async with self._http.get(
                meta.userinfo_endpoint,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            ) as resp:
                status = resp.status
                body = (
                    await read_json(resp, "userinfo", self.config.max_response_bytes)
                    if status == 200
                    else None
                )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise provider_fault("userinfo endpoint", exc) from exc
        if not isinstance(body, dict):
            log.warning("userinfo endpoint answered %d without claims; using the ID token alone", status)
            return claims
        if body.get("sub") != claims.get("sub"):
            # OIDC Core 5.3.2: the sub in the userinfo response MUST be verified to match.
            raise TokenInvalid("userinfo sub differs from the ID token's")
        return {**body, **claims}

    def _tokens(self, reply: dict[str, Any], id_token: str, old_refresh_token: str) -> Tokens:
        expires_in = reply.get("expires_in")
        expires_at = self._clock() + float(expires_in) if isinstance(expires_in, int | float) else 0.0
        return Tokens(
            id_token=id_token,
            access_token=str(reply.get("access_token") or ""),
            refresh_token=str(reply.get("refresh_token") or old_refresh_token),
            expires_at=expires_at,
        )

    def _authenticated(
        self, form: dict[str, str], meta: ProviderMetadata
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The form and headers with our client authentication (token and revocation endpoints)."""
        headers = {"Accept": "application/json"}
        methods = meta.token_endpoint_auth_methods_supported
        if "client_secret_basic" not in methods and "client_secret_post" in methods:
            form = {**form, "client_id": self.config.client_id, "client_secret": self.config.client_secret}
        else:
            # RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding.
            headers["Authorization"] = aiohttp.encode_basic_auth(
                quote(self.config.client_id, safe=""), quote(self.config.client_secret, safe="")
            )
        return form, headers

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        meta = await self.metadata()
        form, headers = self._authenticated(form, meta)
        try:
            async with self._http.post(meta.token_endpoint, data=form, headers=headers) as resp:
                status = resp.status
                body = await read_json(resp, "token endpoint", self.config.max_response_bytes)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise provider_fault("token endpoint", exc) from exc
        if status >= 500:
            raise IdPUnavailable(f"token endpoint answered {status}")
        if not isinstance(body, dict):
            raise IdPUnavailable(f"token endpoint answered {status} without a JSON object")
        if status != 200:
            error = str(body.get("error") or "")
            raise TokenRefused(f"token endpoint refused: {status} {error!r}", error)
        return body
